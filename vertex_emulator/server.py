"""HTTP: a stdlib ThreadingHTTPServer in front of VertexApi, behind the guard (guard.py: Host,
Origin, Content-Type, bearer token), with fault injection."""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from vertex_emulator.errors import ApiError
from vertex_emulator.faults import Faults
from vertex_emulator.guard import Guard
from vertex_emulator.routes import VertexApi

log = logging.getLogger(__name__)


class VertexHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], api: VertexApi, faults: Faults, token: str
    ) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.faults = faults
        self.guard = Guard(self.server_address[1], token, public=api.public_paths)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects
    server_version = "DualtuneVertexEmulator/1"
    server: VertexHttpServer

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        refusal = self.server.guard.check(method, url.path, self.headers, body)
        injected = None if refusal else self.server.faults.take(method, url.path)
        if refusal is not None:
            log.warning("refused %s %s: %s", method, url.path, refusal.message)
            status, payload = refusal.status, ApiError(refusal.status, refusal.message).body()
        elif injected is not None:
            status, payload = injected, ApiError(injected, "Injected fault.").body()
        else:
            try:
                status, payload = self.server.api.handle(method, url.path, url.query, body)
            except Exception as err:  # an emulator bug: answer 500 rather than drop the line
                log.exception("%s %s failed", method, self.path)
                status, payload = 500, ApiError(500, f"Emulator error: {err!r}").body()
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base signature
        log.debug("%s %s", self.address_string(), format % args)
