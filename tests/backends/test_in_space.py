"""The local backend never starts a trial outside its search space (backends/local/in_space.py).

The bug it fixes: a Bayesian study gave a trial train_batch_size=257 under max: 256, because
Keras Tuner's Int.prob_to_value(1.0) is max + 1 on a log scale and its optimiser reaches that
bound. Real oracles, real trial processes (the toy trainer), a real MLflow store.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from backends.base import FAILED, StudyRequest, TrialEnded, TrialStarted
from backends.local.backend import LocalBackend
from backends.local.in_space import admit
from backends.local.oracles import build_oracle
from backends.local.settings import LocalSettings
from search_spaces.loader import load_space
from search_spaces.membership import OutOfSpace, check
from search_spaces.model import Budget, Parameter, SearchSpace, Trainer
from tests.conftest import TOY_TRAINER, dualtune_argv, mlflow_study_runs


def toy_space(max_trials: int = 3, algorithm: str = "bayesian") -> SearchSpace:
    return SearchSpace(
        name="toy",
        parameters=(
            Parameter("x", "double", min=0.0, max=1.0),
            Parameter("units", "integer", min=4, max=16, scale="log"),
        ),
        trainer=Trainer(module=None, script=str(TOY_TRAINER), tuning_args=("--num_epochs=2",)),
        budget=Budget(max_trials=max_trials, parallel_trials=1, max_failed_trials=1),
        algorithm=algorithm,
    )


def trial_at_the_bound(oracle):
    """A trial holding what the Bayesian oracle makes of its optimiser's point at the upper
    bound of [0, 1] in every dimension (BayesianOptimizationOracle._vector_to_values)."""
    trial = oracle.create_trial("slot-0")
    at_bound = oracle._vector_to_values(np.ones(len(oracle._nonfixed_space())))
    trial.hyperparameters.values = dict(at_bound)
    return trial


def test_the_bound_value_is_mapped_and_the_oracle_records_what_runs(tmp_path):
    space = toy_space()
    oracle = build_oracle(space, "bayesian", 3, 1, tmp_path)
    trial = trial_at_the_bound(oracle)
    assert trial.hyperparameters.values["units"] == 17  # Keras Tuner's max + 1

    values, note = admit(oracle, trial, space)

    assert values == {"x": 1.0, "units": 16}
    assert note == "units 17 -> 16 (17 is one past max 16)"
    assert oracle.trials[trial.trial_id].hyperparameters.values["units"] == 16
    saved = json.loads((tmp_path / "oracle" / f"trial_{trial.trial_id}" / "trial.json").read_text())
    assert saved["hyperparameters"]["values"]["units"] == 16
    # The Gaussian process fits what ran: 16's place in [0, 1], not 17's (which is past 1).
    oracle.update_trial(trial.trial_id, {"val_rmse": 0.5}, step=1)
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    x, _ = oracle._vectorize_trials()
    units = oracle._nonfixed_space()[1]  # x, units: the order of its columns
    assert x[0][1] == pytest.approx(units.value_to_prob(16)) and x[0][1] < 1.0
    # A resumed study reloads the mapped value.
    reloaded = build_oracle(space, "bayesian", 3, 1, tmp_path)
    assert reloaded.trials[trial.trial_id].hyperparameters.values["units"] == 16


def test_values_inside_leave_the_oracle_untouched(tmp_path):
    space = toy_space()
    oracle = build_oracle(space, "random", 3, 1, tmp_path)
    trial = oracle.create_trial("slot-0")
    before = dict(trial.hyperparameters.values)
    values, note = admit(oracle, trial, space)
    assert (values, note) == (before, "")


def test_an_unmappable_value_raises_naming_the_parameter(tmp_path):
    space = toy_space()
    oracle = build_oracle(space, "random", 3, 1, tmp_path)
    trial = oracle.create_trial("slot-0")
    trial.hyperparameters.values["units"] = 300
    with pytest.raises(OutOfSpace, match=r"of 'toy': units: 300 is above max 16$"):
        admit(oracle, trial, space)


@pytest.mark.slow
def test_an_unmappable_suggestion_ends_failed_and_starts_no_process(tmp_path):
    """A reloaded oracle hands back a running trial whose saved value is outside the space."""
    space = toy_space(max_trials=2, algorithm="random")
    workdir = tmp_path / "study"
    oracle = build_oracle(space, "random", 2, 1, workdir)
    trial = oracle.create_trial("slot-0")  # saved as running: a resumed study retries it
    trial.hyperparameters.values["units"] = 300
    oracle._save_trial(trial)

    events = []
    request = StudyRequest(study="t", space=space, workdir=workdir)
    LocalBackend(LocalSettings(seed=1, prewarm=False)).run(request, events.append)

    tid = trial.trial_id
    ends = {e.trial_id: e for e in events if isinstance(e, TrialEnded)}
    assert ends[tid].status == FAILED
    assert ends[tid].reason == (
        "not started: the suggested values lie outside the search space of 'toy': "
        "units: 300 is above max 16"
    )
    starts = [e for e in events if isinstance(e, TrialStarted) and e.trial_id == tid]
    assert starts[-1].params["units"] == 300 and starts[-1].pid is None
    assert not (workdir / "trials" / tid).exists()  # no process ever ran for it
    other = next(e for e in ends.values() if e.trial_id != tid)
    assert other.status == "COMPLETED" and (workdir / "trials" / other.trial_id).exists()
    saved = json.loads((workdir / "oracle" / f"trial_{tid}" / "trial.json").read_text())
    assert saved["status"] == "FAILED" and "units: 300 is above max 16" in saved["message"]


SPACE_YAML = """
name: bound
metric: {tag: val_rmse, goal: minimize}
parameters:
  units: {type: integer, min: 4, max: 16, scale: log}
  x: {type: double, min: 0.01, max: 1.0, scale: reverse_log}
trainer:
  script: TRAINER
  tuning_args: ["--num_epochs=1"]
budget: {max_trials: 7, parallel_trials: 1, max_failed_trials: 0}
algorithm: bayesian
"""


@pytest.mark.slow
def test_a_bayesian_study_records_only_values_inside_its_space(isolated):
    """The toy's val_rmse falls as units grows: the Gaussian process drives units to its upper
    bound, where Keras Tuner suggests 17. Every trial in MLflow must hold values inside."""
    path = isolated / "space.yaml"
    path.write_text(SPACE_YAML.replace("TRAINER", str(TOY_TRAINER)))
    done = subprocess.run(
        dualtune_argv("tune", "--space", "space.yaml", "--study", "b", "--seed", "1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    space = load_space(path)
    client = MlflowClient(f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}")
    runs = mlflow_study_runs(client, "b")
    trials = [r for r in runs if r.data.tags.get("dualtune.role") == "trial"]
    assert len(trials) == 7
    for run in trials:
        params = {p.name: p.cast(run.data.params[p.name]) for p in space.parameters}
        check(space, params)  # raises OutOfSpace naming the parameter
        assert run.data.tags["dualtune.status"] == "COMPLETED"
    mapped = [r.data.tags.get("dualtune.mapped_into_space", "") for r in trials]
    assert any("units 17 -> 16" in note for note in mapped), mapped  # the bug's path was taken


# -- the Vertex backend's guard (backends/vertex/follow.py) -------------------------------------


def vertex_job(*trials):
    """A HyperparameterTuningJob snapshot as the SDK returns it (aiplatform_v1 proto-plus)."""
    from google.cloud.aiplatform.compat.types import hyperparameter_tuning_job, study

    def trial(trial_id, state, params, losses):
        return study.Trial(
            id=trial_id,
            state=state,
            parameters=[study.Trial.Parameter(parameter_id=k, value=v) for k, v in params.items()],
            measurements=[
                study.Measurement(
                    step_count=step,
                    metrics=[study.Measurement.Metric(metric_id="val_rmse", value=v)],
                )
                for step, v in enumerate(losses, 1)
            ],
        )

    return hyperparameter_tuning_job.HyperparameterTuningJob(trials=[trial(*t) for t in trials])


def test_a_vertex_trial_outside_the_space_is_ended_failed_and_its_measurements_ignored():
    from backends.vertex.follow import JobFollower

    events = []
    follower = JobFollower(toy_space(), events.append)
    snapshot = vertex_job(
        ("1", 2, {"x": 0.5, "units": 17.0}, [0.4]),
        ("2", 2, {"x": 0.5, "units": 16.0}, [0.3]),
        ("3", 2, {"x": 0.5, "units": 8.5}, []),
    )
    follower.update(snapshot)
    follower.update(snapshot)  # polled again: nothing twice

    started = {e.trial_id: e.params for e in events if isinstance(e, TrialStarted)}
    assert started == {
        "1": {"x": 0.5, "units": 17},
        "2": {"x": 0.5, "units": 16},
        "3": {"x": 0.5, "units": 8.5},
    }
    ends = [(e.trial_id, e.status, e.reason) for e in events if isinstance(e, TrialEnded)]
    assert ends == [
        (
            "1",
            FAILED,
            "ignored: Vertex sent parameters that lie outside the search space of 'toy': "
            "units: 17 is one past max 16",
        ),
        (
            "3",
            FAILED,
            "ignored: Vertex sent parameters that lie outside the search space of 'toy': "
            "units: 8.5 is not an integer",
        ),
    ]
    measured = [(e.trial_id, e.step) for e in events if type(e).__name__ == "Measured"]
    assert measured == [("2", 1)]  # trial 1's measurement is not recorded
    assert follower.best() == (None, None)  # the in-space trial has not ended yet
