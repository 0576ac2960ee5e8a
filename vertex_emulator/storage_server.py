"""The Cloud Storage stand-in as the emulator runs it: gcp-storage-emulator on disk (so objects
survive a restart of the emulator), behind the same guard as the Vertex API (guard.py: loopback
Host, no foreign Origin, the emulator's bearer token; any body type, as uploads are media).

    python -m vertex_emulator.storage_server '{"port": P, "dataDir": D, "bucket": B,
                                                "tokenFile": F, "host": "127.0.0.1"}'

The token is read from its file, never from argv (argv is visible to every local user). The
server exits when its standard input closes: the emulator holds the other end, so a kill -9 of
the emulator ends it too.
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import os
import sys
import threading
import types

from vertex_emulator.guard import Guard

PORT_TAKEN_EXIT = 3


def _guarded_handler(base: type, guard: Guard) -> type:
    """gcp-storage-emulator's request handler, answering each request only if `guard` lets it."""

    class Guarded(base):
        def _refused(self) -> bool:
            refusal = guard.check(self.command, self.path.split("?")[0], self.headers, b"")
            if refusal is None:
                return False
            body = json.dumps({"error": {"code": refusal.status, "message": refusal.message}})
            self.send_response(refusal.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body.encode())
            self.close_connection = True
            return True

    for verb in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        served = getattr(base, f"do_{verb}")

        def handle(self, served=served) -> None:
            if not self._refused():
                served(self)

        setattr(Guarded, f"do_{verb}", handle)
    return Guarded


def _exit_when_orphaned() -> None:
    sys.stdin.buffer.read()  # returns at EOF: the emulator that started us has gone
    os._exit(0)


def settings_of(config: dict) -> types.SimpleNamespace:
    """The settings storage.py passes (one JSON argument: this is no command for people)."""
    return types.SimpleNamespace(
        host=config.get("host", "127.0.0.1"),
        port=int(config["port"]),
        data_dir=config["dataDir"],
        bucket=config["bucket"],
        token_file=config["tokenFile"],
    )


def main(argv: list[str] | None = None) -> int:
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers.buckets import create_bucket

    config = json.loads((sys.argv[1:] if argv is None else argv)[0])  # from storage.py only
    args = settings_of(config)
    logging.basicConfig(level=logging.CRITICAL)
    with open(args.token_file, encoding="utf-8") as handle:
        token = handle.read().strip()
    guard = Guard(args.port, token, json_bodies=False, public=("/",))  # "/": the health check
    storage = server.Storage(data_dir=os.path.abspath(args.data_dir))
    if storage.get_bucket(args.bucket) is None:
        create_bucket(args.bucket, storage)
    handler = functools.partial(_guarded_handler(server.RequestHandler, guard), storage)
    try:
        httpd = http.server.HTTPServer((args.host, args.port), handler)
    except OSError as err:
        print(f"storage server: cannot listen on {args.host}:{args.port}: {err}", flush=True)
        return PORT_TAKEN_EXIT
    threading.Thread(target=_exit_when_orphaned, daemon=True).start()
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
