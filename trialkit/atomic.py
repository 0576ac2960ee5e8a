"""Writing a JSON file whole or not at all, shared by the study record (dualtune/) and the local
backend's oracle state (backends/local/).

The data goes to a temporary file beside the target, is synced, then renamed over it: a kill -9
mid-write leaves the old file, never a torn one. A write that fails (a full disk) removes its
temporary file, and a full disk is told as one line: which file, and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Any

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


def write_json_atomic(path: Path | str, data: Any, **dump: Any) -> None:
    """Write `data` as JSON to `path` atomically (json.dump keyword arguments in `dump`)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            json.dump(data, fh, **dump)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in FULL:
            raise disk_full(path, exc) from None
        raise
