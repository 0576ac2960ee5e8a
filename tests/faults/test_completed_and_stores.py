"""Item 10 of the faults issue: `--resume` of a finished study does nothing and says so;
MLflow's own lines stay off the terminal; `trials`, `compare` and `ui` with no flags read the
latest study from the store it was recorded to, and study.json keeps no credentials."""

from __future__ import annotations

import json
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from dualtune.ui import stop_ui
from tests.conftest import FIXTURES, dualtune_argv, free_port, mlflow_study_runs
from tests.dualtune.test_mlflow_server import start_server

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 300):
    return subprocess.run(dualtune_argv(*args), capture_output=True, text=True, timeout=timeout)


def tune(study: str, *flags: str):
    done = cli("tune", "--space", str(FIXTURES / "toy.yaml"), "--study", study, *flags)
    assert done.returncode == 0, done.stderr
    return done


def test_resume_of_a_completed_study_does_nothing_and_says_so(isolated):
    tune("done", "--max-trials", "1")
    log = isolated / "studies" / "done" / "trials" / "0" / "stdout.log"
    mtime = log.stat().st_mtime_ns
    again = cli("tune", "--resume", "--study", "done")
    assert again.returncode == 0, again.stderr
    said = (again.stdout + again.stderr).strip().splitlines()
    assert said == ["study done already completed; best trial 0; nothing to resume"]
    assert log.stat().st_mtime_ns == mtime  # its last trial did not run again
    uri = f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}"
    runs = mlflow_study_runs(MlflowClient(uri), "done")
    assert {r.info.status for r in runs} == {"FINISHED"}  # study, trial, baseline, confirmation
    roles = sorted(r.data.tags["dualtune.role"] for r in runs)
    assert roles.count("study") == 1 and roles.count("trial") == 1


def test_trials_compare_ui_read_the_latest_study_from_its_own_store(isolated):
    elsewhere = isolated / "elsewhere"
    elsewhere.mkdir()
    uri = f"sqlite:///{elsewhere / 'mlflow.db'}"
    tune("far", "--max-trials", "1", "--tracking-uri", uri)
    assert (
        json.loads((isolated / "studies" / "far" / "study.json").read_text())["tracking_uri"] == uri
    )
    assert not (isolated / "mlruns").exists()  # nothing was made in the default store
    listing = cli("trials")
    assert listing.returncode == 0, listing.stderr
    assert "study far (local): 1 trial," in listing.stdout
    compared = cli("compare")
    assert compared.returncode == 0, compared.stderr
    assert "far" in compared.stdout and "picture:" in compared.stdout
    port = free_port()
    ui = subprocess.Popen(
        dualtune_argv("ui", "--port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        first = ui.stdout.readline()  # printed once the UI answers (bounded by the UI's start)
        second = ui.stdout.readline()
    finally:
        stop_ui(ui)
    assert f"(store: {uri})" in first
    assert second.startswith("compare the trials: http://127.0.0.1:")
    assert not (isolated / "mlruns").exists()


@pytest.mark.e2e
def test_tracking_server_credentials_are_not_recorded_and_mlflow_stays_quiet(isolated):
    port = free_port()
    server = start_server(isolated, port)
    try:
        secret_uri = f"http://alice:s3cret-pw@127.0.0.1:{port}"
        done = tune("srv", "--max-trials", "1", "--tracking-uri", secret_uri)
        assert "View run" not in done.stdout + done.stderr
        assert "View experiment" not in done.stdout + done.stderr
        assert "WARNING mlflow" not in done.stderr
        record = (isolated / "studies" / "srv" / "study.json").read_text()
        assert "s3cret-pw" not in record and "alice" not in record
        assert json.loads(record)["tracking_uri"] == f"http://127.0.0.1:{port}"
        listing = cli("trials")
        assert listing.returncode == 2
        assert "with credentials, which dualtune does not keep; give --tracking-uri" in (
            listing.stderr
        )
        assert len(listing.stderr.strip().splitlines()) == 1
        listing = cli("trials", "--tracking-uri", secret_uri)
        assert listing.returncode == 0, listing.stderr
        assert "study srv (local): 1 trial," in listing.stdout
    finally:
        stop_ui(server)
