"""Ctrl-C in the middle of a study, and the live display on a real terminal (a pty)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FIXTURES, dualtune_argv, mlflow_study_runs, signal_another_thread

pytestmark = pytest.mark.slow

SPACE = """
name: slow
metric: {tag: val_rmse, goal: minimize}
parameters:
  x: {type: double, min: 0.0, max: 1.0}
trainer:
  script: TRAINER
  tuning_args: ["--num_epochs=3", "--epoch_seconds=EPOCH"]
budget: {max_trials: 4, parallel_trials: 1, max_failed_trials: 0}
algorithm: random
"""


def write_space(directory, epoch_seconds: float) -> None:
    text = SPACE.replace("TRAINER", str(FIXTURES / "toy_trainer.py"))
    (directory / "space.yaml").write_text(text.replace("EPOCH", str(epoch_seconds)))


@pytest.mark.parametrize(
    ("stop", "status", "said"),
    [
        (lambda proc: proc.send_signal(signal.SIGINT), 130, "Ctrl-C"),
        # a `kill`, `docker stop`, a closed terminal: the same stop, the signal named; sent to
        # a worker thread, where the kernel may deliver it on a busy machine
        (lambda proc: signal_another_thread(proc.pid, signal.SIGTERM), 143, "SIGTERM"),
        (lambda proc: proc.send_signal(signal.SIGHUP), 129, "SIGHUP"),
    ],
    ids=["ctrl-c", "sigterm", "sighup"],
)
def test_ctrl_c_stops_running_trials_and_keeps_finished_ones(isolated, stop, status, said):
    write_space(isolated, 0.8)
    study = subprocess.Popen(
        dualtune_argv("tune", "--space", "space.yaml", "--study", "c"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    second = isolated / "studies" / "c" / "trials" / "1" / "hypertune" / "output.metrics"
    deadline = time.monotonic() + 120
    while not second.exists() and time.monotonic() < deadline:
        assert study.poll() is None
        time.sleep(0.1)
    assert second.exists(), "the second trial never reported"
    stop(study)
    out, _ = study.communicate(timeout=60)
    assert study.returncode == status, out
    assert f"interrupted by {'the user (Ctrl-C)' if said == 'Ctrl-C' else said}" in out
    client = MlflowClient(f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}")
    trials = {
        r.data.tags["dualtune.trial_id"]: r
        for r in mlflow_study_runs(client, "c")
        if r.data.tags.get("dualtune.role") == "trial"
    }
    assert set(trials) == {"0", "1"}  # no trial started after Ctrl-C
    first, running = trials["0"], trials["1"]
    assert first.data.tags["dualtune.status"] == "COMPLETED"
    assert len(client.get_metric_history(first.info.run_id, "val_rmse")) == 3
    assert running.data.tags["dualtune.status"] == "STOPPED"
    assert running.info.status == "KILLED"
    assert said in running.data.tags["dualtune.reason"]
    # The stopped trial's process is gone: its metric file no longer changes.
    before = second.read_text()
    time.sleep(2)
    assert second.read_text() == before
    meta = json.loads((isolated / "studies" / "c" / "study.json").read_text())
    assert meta["status"] == "STOPPED"
    parent = next(
        r for r in mlflow_study_runs(client, "c") if r.data.tags["dualtune.role"] == "study"
    )
    assert parent.info.status == "KILLED", parent.info.status  # not left RUNNING


def test_live_table_on_a_terminal(isolated):
    write_space(isolated, 0.0)
    pid, fd = pty.fork()
    if pid == 0:  # the child: dualtune on a real terminal
        os.execv(
            dualtune_argv()[0],
            dualtune_argv("tune", "--space", "space.yaml", "--study", "tty", "--max-trials", "2"),
        )
    screen = b""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
    _, status = os.waitpid(pid, 0)
    text = screen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    assert "best val_rmse so far" in text  # the table's title
    assert "COMPLETED" in text and "study tty COMPLETED" in text
    assert "trial 0 epoch 1" not in text  # the plain line log is for pipes, not terminals
