"""What reaches the terminal: dualtune's own lines, not its libraries' chatter.

Only the CLI calls `quiet`. Without --verbose: Python warnings (sklearn's ConvergenceWarning from
Keras Tuner's Gaussian process, deprecations...) are dropped, third-party loggers speak from
ERROR up, and, when the CLI owns the process, TensorFlow's native start-up lines (written by C++
straight to file descriptor 2: cudart_stub, oneDNN, absl's InitializeLog notice) are filtered
out of stderr by a pipe and a thread (trialkit/startup_noise.py says which lines). With
--verbose everything passes: warnings through logging (`WARNING py.warnings: ...`), debug logs,
and the native lines unfiltered. Trials are other processes: their stderr keeps everything, in
their own stderr.log.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import warnings

from trialkit.startup_noise import is_startup_noise

THIRD_PARTY = (
    "absl", "tensorflow", "keras", "keras_tuner", "h5py", "urllib3", "alembic", "git", "mlflow",
)  # fmt: skip
_SENTINEL = b"\x00dualtune-stderr-filter-end\x00\n"  # ends the copy at exit
_installed: list[_NativeFilter] = []


def quiet(verbose: bool, own_process: bool) -> None:
    """Configure warnings and log levels for the terminal; `own_process`: the CLI is the whole
    process (run from the command line, not main() called from Python), so it may also filter
    file descriptor 2."""
    if verbose:
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        return
    # MLflow's own chatter: its loggers (configured from this variable when it is imported,
    # which happens later and lazily: a WARNING from mlflow.tensorflow about model signatures,
    # an ERROR with a whole traceback for every write to a full store, which dualtune's own
    # recorder lane reports in one line), and the "View run ... at: URL" lines its client
    # writes to stdout for a tracking server.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    warnings.simplefilter("ignore")
    warnings.showwarning = _drop  # a library that resets the filters still stays quiet
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.ERROR)
    if own_process and not _installed:
        _installed.append(_NativeFilter())


def _drop(*_args: object, **_kwargs: object) -> None:
    """warnings.showwarning that shows nothing."""


class _NativeFilter:
    """fd 2 becomes a pipe; a thread copies its lines to the real stderr, minus start-up noise.

    At exit the pipe is drained up to a sentinel, so nothing written before is lost; child
    processes do not matter here (dualtune gives every child its own stderr)."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.real = os.dup(2)
        read, self.write = os.pipe()
        os.dup2(self.write, 2)
        os.set_inheritable(2, True)
        self.reader = threading.Thread(
            target=self._copy, args=(read,), name="stderr-filter", daemon=True
        )
        self.reader.start()
        atexit.register(self.close)

    def _copy(self, read: int) -> None:
        with os.fdopen(read, "rb") as pipe:
            for line in pipe:
                done = line.endswith(_SENTINEL)
                if done:
                    line = line[: -len(_SENTINEL)]
                if line and not is_startup_noise(line.decode(errors="replace")):
                    _write_all(self.real, line)
                if done:
                    return

    def close(self) -> None:
        """Give fd 2 back to the real stderr once everything written before is out."""
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.write(self.write, _SENTINEL)
        self.reader.join(timeout=5)
        os.dup2(self.real, 2)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
