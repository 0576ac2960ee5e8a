"""Resume after the orchestrator is killed with SIGKILL mid-trial: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FIXTURES, dualtune_argv, mlflow_study_runs

pytestmark = pytest.mark.slow

SPACE = """
name: resume
metric: {tag: val_rmse, goal: minimize}
parameters:
  x: {type: double, min: 0.0, max: 1.0}
  units: {type: integer, min: 4, max: 16}
trainer:
  script: TRAINER
  tuning_args: ["--num_epochs=4", "--epoch_seconds=0.7"]
budget: {max_trials: 3, parallel_trials: 1, max_failed_trials: 0}
algorithm: random
"""


def reported_steps(metric_file: Path) -> list[int]:
    try:
        return [int(json.loads(ln)["global_step"]) for ln in metric_file.read_text().splitlines()]
    except (FileNotFoundError, ValueError, KeyError):
        return []


def test_sigkill_then_resume_continues_the_running_trial_from_its_checkpoint(isolated):
    (isolated / "space.yaml").write_text(SPACE.replace("TRAINER", str(FIXTURES / "toy_trainer.py")))
    argv = dualtune_argv("tune", "--space", "space.yaml", "--study", "r")
    log = open(isolated / "first.log", "w")
    first = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    second_trial = isolated / "studies" / "r" / "trials" / "1" / "hypertune" / "output.metrics"
    deadline = time.monotonic() + 240
    while len(reported_steps(second_trial)) < 2 and time.monotonic() < deadline:
        assert first.poll() is None, (isolated / "first.log").read_text()[-3000:]
        time.sleep(0.1)
    assert len(reported_steps(second_trial)) >= 2, "the second trial never reached epoch 2"
    os.kill(first.pid, signal.SIGKILL)  # no chance to clean up: like a power loss
    first.wait(30)
    killed_at = max(reported_steps(second_trial))
    time.sleep(2.0)  # the orphaned trial died with its orchestrator: it reports no more epochs
    assert max(reported_steps(second_trial)) == killed_at

    resumed = subprocess.run(
        dualtune_argv("tune", "--resume", "--study", "r"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    client = MlflowClient(f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}")
    runs = mlflow_study_runs(client, "r")
    assert len([r for r in runs if r.data.tags.get("dualtune.role") == "study"]) == 1
    trials = [r for r in runs if r.data.tags.get("dualtune.role") == "trial"]
    assert sorted(r.data.tags["dualtune.trial_id"] for r in trials) == [
        "0",
        "1",
        "2",
    ]  # budget kept
    for run in trials:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_rmse")]
        assert sorted(steps) == [1, 2, 3, 4], (run.data.tags["dualtune.trial_id"], steps)
        assert run.data.tags["dualtune.status"] == "COMPLETED"
    model = json.loads((second_trial.parent.parent / "model" / "model.json").read_text())
    assert model["first_epoch"] == killed_at + 1  # resumed from its checkpoint, not from scratch
