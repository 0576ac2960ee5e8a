"""The emulator's bearer token: made once per workdir, kept in <workdir>/token (mode 0600).

A restart on the same workdir keeps the token, so a client that follows a job through the
restart goes on with the credentials it has; a new workdir gets a new token.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TOKEN_FILE = "token"


def workdir_token(workdir: Path) -> tuple[str, Path]:
    """(token, its file): the workdir's token, created (0600, this user only) if missing."""
    path = workdir / TOKEN_FILE
    try:
        token = path.read_text().strip()
        if token and (path.stat().st_mode & 0o077) == 0:
            return token, path
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    partial = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.replace(partial, path)
    return token, path
