"""`dualtune tune` end to end: the real CLI in a subprocess, trials as processes, MLflow checked
through MlflowClient."""

from __future__ import annotations

import subprocess

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FIXTURES, dualtune_argv, mlflow_study_runs

pytestmark = pytest.mark.slow


def run_cli(*args, timeout=300, **kw):
    return subprocess.run(
        dualtune_argv(*args), capture_output=True, text=True, timeout=timeout, **kw
    )


def study_runs(uri, study):
    client = MlflowClient(uri)
    runs = mlflow_study_runs(client, study)
    parent = [r for r in runs if r.data.tags.get("dualtune.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("dualtune.role") == "trial"]
    return client, parent, trials


def test_tune_records_every_epoch_of_every_trial(isolated):
    done = run_cli("tune", "--space", str(FIXTURES / "toy.yaml"), "--study", "s1")
    assert done.returncode == 0, done.stderr
    assert "dualtune trials --study s1" in done.stdout
    uri = f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}"
    client, parent, trials = study_runs(uri, "s1")
    assert len(parent) == 1 and len(trials) == 3
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert run.data.tags["dualtune.status"] == "COMPLETED"
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "val_rmse")
        assert sorted(m.step for m in history) == [1, 2, 3]
        assert set(run.data.params) == {"x", "units", "act"}
        int(run.data.params["units"])  # an integer, not "8.0"
    best = parent[0].data.metrics["best_val_rmse"]
    finals = [float(r.data.tags["dualtune.final_value"]) for r in trials]
    assert best == pytest.approx(min(finals))
    listing = run_cli("trials", "--study", "s1")
    assert listing.returncode == 0, listing.stderr
    rows = [ln for ln in listing.stdout.splitlines() if "COMPLETED" in ln]
    values = [float(ln.split()[2]) for ln in rows]
    assert values == sorted(values) and len(values) == 3


def test_tune_flags_override_the_space_and_extra_args_reach_trials(isolated):
    done = run_cli(
        "tune",
        "--space",
        str(FIXTURES / "toy.yaml"),
        "--study",
        "s2",
        "--max-trials",
        "2",
        "--parallel-trials",
        "1",
        "--algorithm",
        "bayesian",
        "--",
        "--skip_full_eval",
    )
    assert done.returncode == 0, done.stderr
    import json

    models = sorted((isolated / "studies" / "s2" / "trials").glob("*/model/model.json"))
    assert len(models) == 2
    for model in models:
        assert "--skip_full_eval" in json.loads(model.read_text())["argv"]


def test_unknown_parameter_is_caught_by_asking_the_trainers_help(isolated):
    space = (FIXTURES / "toy.yaml").read_text().replace("units:", "unitz:")
    (isolated / "bad.yaml").write_text(space)
    (isolated / "toy_trainer.py").write_text((FIXTURES / "toy_trainer.py").read_text())
    done = run_cli("tune", "--space", "bad.yaml", "--study", "bad")
    assert done.returncode == 2
    assert "parameters.unitz" in done.stderr and "--unitz" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (isolated / "studies" / "bad").exists()
