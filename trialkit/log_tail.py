"""The end of a log file, read without reading the log: a failure reason comes from the last
lines a process wrote, and a process that wrote 50 MB must not cost its watcher 50 MB (or
twice that, decoded). Shared by the local backend's trials and the Vertex emulator's replicas.
"""

from __future__ import annotations

import os
from pathlib import Path

from trialkit.startup_noise import meaningful_lines

TAIL_BYTES = 64 * 1024  # of a log read for a failure reason: 15 lines, with room to spare


def read_tail(path: Path | str, max_bytes: int = TAIL_BYTES) -> str:
    """At most the last `max_bytes` of the file at `path`, decoded (bad bytes replaced); when
    the file is longer, its first line there is cut by the limit and left out. '' if the file
    does not exist."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - max_bytes))
            chunk = fh.read(max_bytes)
    except FileNotFoundError:
        return ""
    if size > max_bytes:
        chunk = chunk.partition(b"\n")[2]
    return chunk.decode(errors="replace")


def stderr_tail(path: Path | str, lines: int = 15, limit: int = 2000) -> str:
    """The last meaningful lines of a log, for a failure reason: TensorFlow's start-up lines
    (cudart_stub, cuInit, oneDNN...), which every TensorFlow process prints, are left out; ''
    if none. Only the last TAIL_BYTES are read."""
    kept = meaningful_lines(read_tail(path))[-lines:]
    return "\n".join(kept)[-limit:]
