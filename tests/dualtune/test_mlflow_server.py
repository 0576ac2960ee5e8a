"""A study recorded into a real `mlflow server` (what a team runs), over loopback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from dualtune.ui import stop_ui
from tests.conftest import FIXTURES, dualtune_argv, free_port, mlflow_study_runs

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def start_server(root, port: int) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'server.db'}",
            "--artifacts-destination",
            str(root / "server-artifacts"),
        ],
        env=env,
        stdout=open(root / "server.log", "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (root / "server.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    raise AssertionError("mlflow server did not start")


@pytest.fixture
def server(isolated):
    port = free_port()
    proc = start_server(isolated, port)
    yield f"http://127.0.0.1:{port}", port, proc
    if proc.poll() is None:
        stop_ui(proc)


def test_study_recorded_in_a_real_mlflow_server(isolated, server, caplog):
    url, _, _ = server
    done = subprocess.run(
        dualtune_argv(
            "tune", "--space", str(FIXTURES / "toy.yaml"), "--study", "srv", "--tracking-uri", url
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    client = MlflowClient(url)
    runs = mlflow_study_runs(client, "srv")
    trials = [r for r in runs if r.data.tags.get("dualtune.role") == "trial"]
    assert len(trials) == 3
    for run in trials:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_rmse")]
        assert sorted(steps) == [1, 2, 3]
    # The space file is an artifact of the study run, stored by the server.
    parent = next(r for r in runs if r.data.tags.get("dualtune.role") == "study")
    names = [a.path for a in client.list_artifacts(parent.info.run_id, "search_space")]
    assert names == ["search_space/space.yaml"]
    # Reading back: the server's bulk endpoint answers for every trial at once.
    from dualtune.mlflow_layout import metric_histories

    with caplog.at_level(logging.DEBUG, logger="dualtune.mlflow_layout"):
        histories = metric_histories(client, [r.info.run_id for r in trials], "val_rmse")
    assert [[s for s, _ in h] for h in histories.values()] == [[1, 2, 3]] * 3
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
    compared = subprocess.run(
        dualtune_argv("compare", "srv", "--tracking-uri", url, "--output", "c.png"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compared.returncode == 0, compared.stderr
    assert "c.png" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    # Nothing was written to a local store.
    assert not (isolated / "mlruns" / "mlflow.db").exists()


def test_tracking_server_outage_mid_study_loses_and_doubles_nothing(isolated, server):
    url, port, proc = server
    space = (FIXTURES / "toy.yaml").read_text()
    space = space.replace(
        'tuning_args: ["--num_epochs=3"]', 'tuning_args: ["--num_epochs=3", "--epoch_seconds=1.0"]'
    )
    space = space.replace("script: toy_trainer.py", f"script: {FIXTURES / 'toy_trainer.py'}")
    space = space.replace("max_trials: 3, parallel_trials: 2", "max_trials: 4, parallel_trials: 1")
    (isolated / "space.yaml").write_text(space)
    env = {
        **os.environ,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    study = subprocess.Popen(
        dualtune_argv("tune", "--space", "space.yaml", "--study", "out", "--tracking-uri", url),
        stdout=open(isolated / "study.log", "w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    client = MlflowClient(url)
    deadline = time.monotonic() + 120
    logged = 0
    while logged < 2 and time.monotonic() < deadline:  # wait for the first points to land
        assert study.poll() is None, (isolated / "study.log").read_text()[-3000:]
        runs = mlflow_study_runs(client, "out")
        logged = sum(len(client.get_metric_history(r.info.run_id, "val_rmse")) for r in runs)
        time.sleep(0.3)
    assert logged >= 2
    stop_ui(proc)  # the tracking server goes away for a while, mid-study
    time.sleep(6)
    assert study.poll() is None  # the study goes on without it
    restarted = start_server(isolated, port)
    try:
        assert study.wait(300) == 0, (isolated / "study.log").read_text()[-3000:]
        runs = mlflow_study_runs(client, "out")
        trials = [r for r in runs if r.data.tags.get("dualtune.role") == "trial"]
        assert len(trials) == 4
        for run in trials:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_rmse")]
            assert sorted(steps) == [1, 2, 3], steps  # every epoch, once
            assert run.data.tags["dualtune.status"] == "COMPLETED"
        log = (isolated / "study.log").read_text()
        assert "events are kept and replayed" in log
    finally:
        stop_ui(restarted)
