"""The MLflow layout: one experiment per search space holding every study of it (a parent run
per study, a child run per trial), and stores of the earlier layout (an experiment per study)
still read, resumed and re-attached."""

from __future__ import annotations

import json
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from backends.base import Measured, StudyStarted, TrialEnded, TrialStarted
from dualtune.cli import main
from dualtune.mlflow_layout import find_study
from dualtune.mlflow_recorder import MlflowRecorder
from dualtune.report import study_runs
from tests.dualtune.mlflow_layouts import old_layout_study, record_study, toy_space


@pytest.fixture
def uri(isolated) -> str:
    return f"sqlite:///{isolated / 'mlflow.db'}"


def test_studies_of_one_space_share_its_experiment(uri):
    record_study(uri, "a", "local", {"0": ("COMPLETED", [3.0, 2.0]), "1": ("FAILED", [5.0])})
    record_study(uri, "b", "vertex", {"1": ("STOPPED", [4.0]), "2": ("COMPLETED", [2.5, 1.5])})
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    assert experiment.name == "toy" and experiment.tags["dualtune.space"] == "toy"
    runs = client.search_runs([experiment.experiment_id])
    parents = {r.info.run_name: r for r in runs if r.data.tags["dualtune.role"] == "study"}
    assert set(parents) == {"local/a", "vertex/b"}
    for name, parent in parents.items():
        backend, study = name.split("/")
        assert parent.data.tags["dualtune.backend"] == backend
        assert parent.data.tags["dualtune.study"] == study
        assert parent.data.tags["dualtune.space"] == "toy"
        assert parent.data.tags["dualtune.algorithm"] == "random"
        assert set(parent.data.metrics) == {"best_val_rmse"}  # not the per-epoch metric
    trials = {r.info.run_name: r for r in runs if r.data.tags["dualtune.role"] == "trial"}
    assert set(trials) == {
        "local/a/trial-1",
        "local/a/trial-2",
        "vertex/b/trial-1",
        "vertex/b/trial-2",
    }
    for name, run in trials.items():
        backend, study, _ = name.split("/")
        assert run.data.tags["dualtune.backend"] == backend
        assert run.data.tags["dualtune.study"] == study
        assert run.data.tags["mlflow.parentRunId"] == parents[f"{backend}/{study}"].info.run_id
        assert set(run.data.metrics) == {"val_rmse"}
    parent, rows = study_runs(client, "b")
    assert parent.info.run_id == parents["vertex/b"].info.run_id
    assert [(r.trial_id, r.status, r.final, r.history) for r in rows] == [
        ("2", "COMPLETED", 1.5, ((1, 2.5), (2, 1.5))),
        ("1", "STOPPED", 4.0, ((1, 4.0),)),
    ]


def test_an_old_layout_study_is_listed(uri, capsys):
    old_layout_study(uri, "old", {"0": [0.5, 0.25], "1": [0.0002965488058019691]}, key="/w/old")
    assert main(["trials", "--study", "old", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "study old (local): 2 trials, best first"
    assert out[2].split() == ["1", "COMPLETED", "0.0002965", "1", "act=relu", "units=8", "x=0.2"]
    assert out[3].split() == ["0", "COMPLETED", "0.25", "2", "act=relu", "units=8", "x=0.1"]


def test_an_old_layout_study_resumes_in_its_own_experiment(uri):
    experiment = old_layout_study(uri, "old", {"0": [0.5, 0.25]}, key="/w/old")
    recorder = MlflowRecorder(uri)  # what `tune --resume` and `attach` run
    recorder.handle(StudyStarted("old", "local", "random", toy_space(), workdir="/w/old"))
    recorder.handle(TrialStarted("0", 1, {"x": 0.1, "units": 8}))  # continued: no new run
    recorder.handle(Measured("0", 2, 9.0))  # a step it has: not logged again
    recorder.handle(TrialStarted("1", 2, {"x": 0.7, "units": 8}))
    recorder.handle(Measured("1", 1, 0.125))
    recorder.handle(TrialEnded("1", "COMPLETED", 0.125))
    client = MlflowClient(uri)
    assert client.get_experiment_by_name("toy") is None  # nothing moved to the space's
    runs = client.search_runs([experiment])
    assert sorted(r.info.run_name for r in runs) == ["old", "trial-1", "trial-2"]
    parent, rows = study_runs(client, "old")
    assert parent.info.experiment_id == experiment
    assert [(r.trial_id, r.history) for r in rows] == [
        ("1", ((1, 0.125),)),
        ("0", ((1, 0.5), (2, 0.25))),
    ]
    assert client.get_metric_history(parent.info.run_id, "best_val_rmse")[-1].value == 0.125


def test_a_new_study_with_an_old_studys_name_is_found_as_the_latest(uri):
    old_layout_study(uri, "s", {"0": [1.0]}, key="/w/s")
    record_study(uri, "s", "local", {"0": ("COMPLETED", [0.5])}, key="/other/s")
    client = MlflowClient(uri)
    assert client.get_experiment(find_study(client, "s").info.experiment_id).name == "toy"


def test_an_unknown_study_is_one_line(uri, capsys):
    record_study(uri, "a", "local", {"0": ("COMPLETED", [1.0])})
    capsys.readouterr()  # MLflow's own chatter while creating the store
    assert main(["trials", "--study", "nope", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MLflow has no study 'nope'" in err


@pytest.mark.slow
def test_an_old_layout_study_finalizes_into_its_own_experiment(isolated):
    """finalize puts its run where the study's parent run is (here: the study's experiment)."""
    from tests.backends.test_vertex import TINY_KERAS_TASK
    from tests.conftest import FIXTURES, dualtune_argv

    (isolated / "tinykeras.py").write_text(TINY_KERAS_TASK)
    space = (FIXTURES / "toy.yaml").read_text().replace("toy_trainer.py", "tinykeras.py")
    space = space.replace('["--num_epochs=4"]', '["--num_epochs=2", "--save_model"]')
    study = isolated / "studies" / "old"
    study.mkdir(parents=True)
    (study / "space.yaml").write_text(space)
    meta = {"study": "old", "backend": "local", "space_source": str(isolated / "space.yaml")}
    (study / "study.json").write_text(json.dumps(meta))
    uri = f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}"
    (isolated / "mlruns").mkdir()
    experiment = old_layout_study(uri, "old", {"0": [0.5, 0.25], "1": [0.4]}, key=str(study))
    done = subprocess.run(
        dualtune_argv("finalize", "--study", "old"), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    (fin,) = client.search_runs([experiment], "tags.`dualtune.role` = 'finalize'")
    assert fin.data.params == {"x": "0.1", "units": "8", "act": "relu"}  # trial 0's, the best
    assert client.get_experiment_by_name("toy") is None
    assert client.search_model_versions("name = 'old'")[0].run_id == fin.info.run_id
