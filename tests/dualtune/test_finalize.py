"""The main job for real: the flights trainer tuned (tiny budget), then finalized and registered."""

from __future__ import annotations

import json
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import dualtune_argv, mlflow_study_runs

pytestmark = pytest.mark.slow

TINY = ["--num_examples=1500", "--num_eval_examples=500", "--num_epochs=2"]


def test_flights_study_then_finalize_registers_a_model(isolated, flights_data):
    tune = subprocess.run(
        dualtune_argv("tune", "--study", "fl", "--max-trials", "2", "--", *TINY),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tune.returncode == 0, tune.stderr[-3000:]
    final = subprocess.run(
        dualtune_argv("finalize", "--study", "fl", "--", "--num_examples=1500", "--num_epochs=2"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert final.returncode == 0, final.stderr[-3000:]
    # No --backend: the one the study was tuned on (local: nothing to say); the record keeps where.
    assert final.stdout.startswith("finalizing study fl: "), final.stdout[:300]
    meta = json.loads((isolated / "studies" / "fl" / "study.json").read_text())
    assert meta["finalized"] == {"backend": "local", "vertex_model": None}
    assert "mlflow.tensorflow" not in final.stderr  # MLflow's own warnings: not in quiet mode
    client = MlflowClient(f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}")
    runs = mlflow_study_runs(client, "fl")
    trials = [r for r in runs if r.data.tags.get("dualtune.role") == "trial"]
    (parent,) = [r for r in runs if r.data.tags.get("dualtune.role") == "study"]
    (fin,) = [r for r in runs if r.data.tags.get("dualtune.role") == "finalize"]
    winner = parent.data.tags["dualtune.winner"]  # the verdict: a trial, or the guess
    assert fin.data.tags["dualtune.winner"] == winner
    assert f"finalized {'the guess' if winner == 'baseline' else 'trial ' + winner}" in final.stdout
    if winner == "baseline":  # the trainer's defaults: no parameter at all
        assert fin.data.params == {} and "dualtune.best_trial_run_id" not in fin.data.tags
    else:  # the winner's parameters, cast to their types, reached the finalize run
        (best,) = [r for r in trials if r.data.tags["dualtune.trial_id"] == winner]
        assert fin.data.tags["dualtune.best_trial_run_id"] == best.info.run_id
        assert fin.data.params == best.data.params
    assert [m.step for m in client.get_metric_history(fin.info.run_id, "val_rmse")] == [1, 2]
    # Full evaluation: finalize runs without --skip_full_eval, so test metrics exist.
    assert 0 < fin.data.metrics["test_rmse"] < 1
    assert "test_auc" in fin.data.metrics
    (version,) = client.search_model_versions("name = 'fl'")
    assert version.run_id == fin.info.run_id and str(version.version) == "1"
    assert fin.info.status == "FINISHED"
