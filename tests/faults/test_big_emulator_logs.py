"""A 50 MB log where the Vertex emulator reads a failure reason: a replica's stderr, the storage
server's log. Each reason comes from the log's tail (trialkit/log_tail.py); the reader's Python
heap (tracemalloc, this process) stays far below the log's size. Reading the whole log cost
about twice its size (the text, then the slice)."""

from __future__ import annotations

import os
import sys
import tracemalloc
from pathlib import Path

import pytest

from trialkit.log_tail import read_tail, stderr_tail

MB = 1 << 20
BOUND = 1 * MB  # the tail read is 64 KiB at most; the log is 50 MiB
NOISE = b"noise " * 16 + b"\n"


def _fill(path: Path, megabytes: int, last: str) -> None:
    """`megabytes` of noise lines, then `last` (written in 1 MiB blocks, not held whole)."""
    block = NOISE * (MB // len(NOISE))
    with open(path, "wb") as fh:
        for _ in range(megabytes):
            fh.write(block)
        fh.write(last.encode() + b"\n")


def _peak(call):
    """(call's result, the Python heap's peak while it ran)."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_tail_helpers_read_64_kib_of_a_50_mb_log(tmp_path):
    log = tmp_path / "stderr.log"
    _fill(log, 50, "the real reason: out of patience")
    text, peak = _peak(lambda: read_tail(log))
    assert peak < BOUND and len(text) <= 64 * 1024
    assert text.endswith("the real reason: out of patience\n")
    assert text.startswith("noise")  # the first line, cut by the limit, is left out whole
    reason, peak = _peak(lambda: stderr_tail(log))
    assert peak < BOUND and reason.splitlines()[-1] == "the real reason: out of patience"
    assert len(reason.splitlines()) == 15 and len(reason) <= 2000
    assert read_tail(tmp_path / "missing.log") == stderr_tail(tmp_path / "missing.log") == ""


def test_an_emulator_replica_that_wrote_50_mb_to_stderr_yields_a_bounded_reason(tmp_path):
    from vertex_emulator.runner import STDERR_TAIL_CHARS, Launch, WorkerProcess

    code = (
        "import sys\n"
        f"block = {NOISE!r} * ({MB} // {len(NOISE)})\n"
        "for _ in range(50): sys.stderr.buffer.write(block)\n"
        "sys.stderr.write('the real reason: out of patience\\n')\n"
        "sys.exit(1)\n"
    )
    replica = WorkerProcess(Launch([sys.executable, "-c", code], dict(os.environ), tmp_path))
    assert replica.proc.wait(timeout=60) == 1
    assert replica.stderr_path.stat().st_size > 50 * 10**6  # it really wrote it
    reason, peak = _peak(replica.stderr_tail)
    assert peak < BOUND
    assert reason.endswith("the real reason: out of patience")
    assert len(reason) <= STDERR_TAIL_CHARS


def test_a_storage_server_that_fails_after_a_50_mb_log_yields_a_bounded_reason(tmp_path):
    from tests.conftest import free_port
    from vertex_emulator.errors import EmulatorError
    from vertex_emulator.storage import StorageEmulator

    log = tmp_path / "storage.log"
    _fill(log, 50, "an earlier run's last line")
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("a file where its data folder should be")
    token = tmp_path / "token"
    token.write_text("t")
    port = free_port()
    with pytest.raises(EmulatorError, match=r"the storage emulator did not start: ") as failed:
        _peak(lambda: StorageEmulator.start("b", log, not_a_folder, token, port=port))
    said = str(failed.value)
    assert len(said) < 2100 and "an earlier run's last line" in said
    assert "NotADirectoryError" in said or "FileExistsError" in said, said[-500:]
