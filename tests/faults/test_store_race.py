"""Two studies started at the same moment on a SQLite store that does not exist yet: MLflow's
first-open schema migration raced (`table _alembic_tmp_tags already exists`, `duplicate column
name: step`; 2 of 3 tries crashed, and the store stayed broken). dualtune now creates and
migrates the store once under a file lock beside it. Real `dualtune tune` processes, a fresh
store each round, a few rounds (the race was not every time)."""

from __future__ import annotations

import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FIXTURES, dualtune_argv, mlflow_study_runs

pytestmark = pytest.mark.slow

ROUNDS = 3


def start(study: str, uri: str) -> subprocess.Popen:
    return subprocess.Popen(
        dualtune_argv(
            "tune", "--space", str(FIXTURES / "toy.yaml"), "--study", study, "--max-trials", "1",
            "--tracking-uri", uri, "--skip-trainer-check", "--no-prewarm",
            "--no-baseline", "--no-confirm",  # the race is about the store, not the verdict
        ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_studies_racing_on_a_new_store_both_succeed(round_, isolated):
    db = isolated / "store" / "mlflow.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    procs = {name: start(name, uri) for name in ("left", "right")}
    deadline = time.monotonic() + 300
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
        assert "Traceback" not in err, err
    client = MlflowClient(uri)
    for name in procs:
        runs = mlflow_study_runs(client, name)
        assert sorted(r.data.tags["dualtune.role"] for r in runs) == ["study", "trial"]
    third = subprocess.run(  # the store works afterwards: another study records in it
        dualtune_argv(
            "tune", "--space", str(FIXTURES / "toy.yaml"), "--study", "after",
            "--max-trials", "1", "--tracking-uri", uri,
        ),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr
    assert sorted(p.name for p in (isolated / "studies").iterdir()) == ["after", "left", "right"]


def test_a_store_that_fails_to_open_leaves_no_study_folder(isolated):
    """The record is made, then the store fails as the study starts: one line, exit 2, and
    the half-made studies/<name> is removed (a crash before the study started left it)."""
    db = isolated / "mlflow.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\xde\xad" * 4096)  # its header, then garbage
    done = subprocess.run(
        dualtune_argv(
            "tune", "--space", str(FIXTURES / "toy.yaml"), "--study", "s",
            "--tracking-uri", f"sqlite:///{db}",
        ),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and f"the MLflow store {db} cannot be opened" in lines[0], lines
    assert not (isolated / "studies" / "s").exists()
    assert list((isolated / "studies").iterdir()) == []
