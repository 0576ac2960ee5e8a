"""Who may talk to the emulator: only what a Vertex client on this machine would send.

The emulator runs commands it is sent, so a request is answered only when
- its Host is a loopback name with the emulator's port (127.0.0.1, localhost, [::1]): a page
  that rebinds its own DNS name to 127.0.0.1 sends its own name, and is refused;
- it carries no Origin, or the emulator's own: browsers send a foreign page's origin;
- a body, if any, is JSON (Content-Type application/json): a page may post text/plain without
  asking first, never application/json;
- it carries `Authorization: Bearer <token>` with this emulator's token (token.py), which only
  a process that can read the token file (0600, the emulator's user) knows.
`public` paths (the info endpoint: where the token file is, never the token) skip the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


@dataclass(frozen=True)
class Guard:
    port: int
    token: str
    json_bodies: bool = True  # the storage API also takes media uploads
    public: tuple[str, ...] = ()

    def check(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Refusal | None:
        """None when the request may be served, else why not (403, 415 or 401)."""
        hosts = {f"{name}:{self.port}" for name in LOOPBACK_NAMES}
        host = (headers.get("Host") or "").strip().lower()
        if host not in hosts:
            return Refusal(
                403, f"Host {host!r} refused: the emulator answers only {sorted(hosts)}."
            )
        origin = headers.get("Origin")
        if origin is not None and origin.strip().lower() not in {f"http://{h}" for h in hosts}:
            return Refusal(403, f"Origin {origin!r} refused: no web page may call the emulator.")
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if self.json_bodies and body.strip() and ctype != "application/json":
            return Refusal(415, f"Content-Type {ctype or 'none'!r} refused: send application/json.")
        if path in self.public:
            return None
        scheme, _, given = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), self.token):
            return Refusal(
                401, "Missing or wrong bearer token: send the one in the emulator's token file."
            )
        return None
