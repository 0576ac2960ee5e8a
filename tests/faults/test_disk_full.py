"""A full disk, on real filesystems of a fixed size (tmpfs mounts, see conftest.py).

- The study folder and the SQLite store full mid-study: the study stops with one clear line
  (which file, that its filesystem is full, the fix), no traceback, no `*.tmp-PID` file left;
  once space is freed, `--resume` finishes it with every epoch of every trial recorded.
- Only the store full for a while: the study completes, every epoch reaches MLflow once space
  is back, and the terminal gets a handful of lines (before: 933, 20 of them tracebacks).
"""

from __future__ import annotations

import errno
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FIXTURES, dualtune_argv, mlflow_study_runs

pytestmark = pytest.mark.slow


def fill(folder: Path) -> Path:
    """Fill the filesystem that holds `folder` to the last byte; the filler file's path."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as fh:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


def tune(*flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        dualtune_argv(
            "tune", "--space", str(FIXTURES / "toy.yaml"), "--study", "s", *flags,
            "--", "--epoch_seconds=1",
        ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def epochs_recorded(uri: str) -> list[int]:
    client = MlflowClient(uri)
    trials = [r for r in mlflow_study_runs(client, "s") if r.data.tags["dualtune.role"] == "trial"]
    return sorted(len(client.get_metric_history(r.info.run_id, "val_rmse")) for r in trials)


def test_full_study_folder_and_store_stop_cleanly_and_resume(isolated, small_fs):
    full = small_fs("full", "24m")
    flags = ("--workdir", str(full / "studies"), "--tracking-uri", f"sqlite:///{full / 'db'}")
    proc = tune(*flags, "--parallel-trials", "1")
    wait_for(full / "studies" / "s" / "trials" / "0" / "hypertune" / "output.metrics", proc)
    filler = fill(full)
    out, err = proc.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert proc.returncode == 1, err
    assert "Traceback" not in out + err, err
    assert "is full; free space there, then continue with `dualtune tune --resume" in lines[-1]
    assert len(lines) <= 4, err  # the store's outage, once; the records it could not catch up
    assert sorted(full.rglob("*.tmp-*")) == []
    filler.unlink()
    resumed = subprocess.run(
        dualtune_argv("tune", "--resume", "--study", "s", *flags),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert epochs_recorded(flags[-1]) == [3, 3, 3]  # nothing lost


def test_store_full_for_a_while_the_study_completes_quietly(isolated, small_fs):
    store = small_fs("store", "16m")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    proc = tune("--tracking-uri", uri)
    wait_for(isolated / "studies" / "s" / "trials" / "0" / "hypertune" / "output.metrics", proc)
    filler = fill(store)
    time.sleep(6)  # trials go on meanwhile: their epochs wait in the recorder's lane
    filler.unlink()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err, err
    assert err.count("MlflowRecorder unavailable") == 1, err  # the outage happened, told once
    assert "database or disk is full" in err  # the cause, in that one line
    assert len(err.strip().splitlines()) <= 2, err  # unavailable, then back; the rest is the
    assert "trial 2 COMPLETED" in out  # study's own display, one line per event
    assert epochs_recorded(uri) == [3, 3, 3]
