"""Writing a file whole or not at all: JSON for the study record (dualtune/) and the local
backend's oracle state (backends/local/), any bytes through atomic_file (compare's picture).

The data goes to a temporary file beside the target, is synced, then renamed over it: a kill -9
mid-write leaves the old file, never a torn one. A write that fails (a full disk) removes its
temporary file, and a full disk is told as one line: which file, and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from trialkit.errors import DualtuneError

FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(DualtuneError):
    """A file could not be written because its filesystem (or the user's quota) is full."""

    exit_code = 1


def disk_full(path: Path | str, exc: OSError) -> DiskFullError:
    folder = Path(path).parent
    return DiskFullError(
        f"{path}: {exc.strerror or 'no space left on device'}: the filesystem that holds "
        f"{folder} is full; free space there, then continue with `dualtune tune --resume "
        f"--study NAME` (nothing recorded so far is lost)"
    )


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: str = "wb") -> Iterator[IO[Any]]:
    """A file to write `path` through, whole or not at all: a temporary file beside it, synced
    and renamed over it when the block ends; on any failure (in the block, the sync or the
    rename) the temporary file is removed and the error goes on, `path` left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path | str, data: Any, **dump: Any) -> None:
    """Write `data` as JSON to `path` atomically (json.dump keyword arguments in `dump`); a full
    disk is a DiskFullError (one line)."""
    try:
        with atomic_file(path, "w") as fh:
            json.dump(data, fh, **dump)
    except OSError as exc:
        if exc.errno in FULL:
            raise disk_full(path, exc) from None
        raise
