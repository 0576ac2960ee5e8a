"""Shared fixtures: every test gets its own working directory and MLflow store."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOY_TRAINER = FIXTURES / "toy_trainer.py"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test writes into the repo's mlruns/ or studies/: cwd and the store are temporary."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return tmp_path


@pytest.fixture(scope="session")
def flights_data(tmp_path_factory):
    """The embedded flights data, written once per session into a temporary cache."""
    from trainer.embedded import write_data

    directory = tmp_path_factory.mktemp("flights-data")
    paths = write_data(directory)
    os.environ["DUALTUNE_DATA_DIR"] = str(directory)
    return paths


def dualtune_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "dualtune.cli", *args]


def signal_another_thread(pid: int, sig: signal.Signals) -> None:
    """sig to one of pid's threads that is not its main thread (glibc's tgkill): what the kernel
    may do with any signal sent to a busy multi-threaded process, done every time."""
    tids = sorted(int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if t.name != str(pid))
    assert tids, f"process {pid} has no thread besides its main one"
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.tgkill(pid, tids[0], sig) == 0, os.strerror(ctypes.get_errno())


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_study_runs(client, study: str) -> list:
    """Every run of one study (its parent, trials and finalize runs), found by the study's tag
    in whichever experiment holds them (one per search space)."""
    ids = [e.experiment_id for e in client.search_experiments()]
    filter_string = f"tags.`dualtune.study` = '{study}'"
    return list(client.search_runs(ids, filter_string, max_results=1000)) if ids else []
