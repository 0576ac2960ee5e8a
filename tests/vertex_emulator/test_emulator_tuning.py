"""HyperparameterTuningJobs through the real aiplatform SDK: trials, measurements, stopping."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Keras Tuner 1.4.8 calls threading.currentThread().getName(), deprecated since Python 3.10.
KERAS_TUNER_WARNINGS = pytest.mark.filterwarnings(
    r"ignore:(currentThread|getName)\(\) is deprecated:DeprecationWarning"
)
pytestmark = [pytest.mark.e2e, KERAS_TUNER_WARNINGS]

ACTIVE, STOPPING, SUCCEEDED, INFEASIBLE = 2, 3, 4, 5  # Trial.State


@pytest.fixture
def hpt():
    from google.cloud.aiplatform import hyperparameter_tuning

    return hyperparameter_tuning


@pytest.fixture
def make_tuning_job(aiplatform, make_custom_job):
    def make(display_name: str, args: list[str], space: dict, **options):
        options.setdefault("max_trial_count", 1)
        options.setdefault("parallel_trial_count", 1)
        return aiplatform.HyperparameterTuningJob(
            display_name=display_name,
            custom_job=make_custom_job(display_name, args),
            metric_spec={"loss": "minimize"},
            parameter_spec=space,
            **options,
        )

    return make


def _space(hpt, with_double: bool) -> dict:
    dropout = hpt.DiscreteParameterSpec(values=[0.1, 0.2], scale="linear", parent_values=["tanh"])
    space = {
        "units": hpt.IntegerParameterSpec(min=1, max=2, scale="linear"),
        "act": hpt.CategoricalParameterSpec(
            values=["relu", "tanh"], conditional_parameter_spec={"dropout": dropout}
        ),
        "width": hpt.DiscreteParameterSpec(values=[0.5, 1.0], scale="linear"),
    }
    if with_double:
        space["lr"] = hpt.DoubleParameterSpec(min=1e-3, max=1e-1, scale="log")
    return space


def _trial_seen(emulator, job, trial) -> dict:
    base = job._gca_resource.trial_job_spec.base_output_directory.output_uri_prefix
    path = emulator.gs_to_local(f"{base}/{trial.id}/model/seen.json")
    return json.loads(Path(path).read_text())


def _params(trial) -> dict:
    return {p.parameter_id: p.value for p in trial.parameters}


@pytest.mark.parametrize("algorithm", [None, "grid", "random"])
def test_each_algorithm_runs_trials_with_typed_conditional_parameters(
    algorithm, emulator, make_tuning_job, hpt
):
    grid = algorithm == "grid"
    job = make_tuning_job(
        f"algo-{algorithm}",
        ["--epochs=2"],
        _space(hpt, with_double=not grid),
        search_algorithm=algorithm,
        max_trial_count=20 if grid else 4,
        parallel_trial_count=3 if grid else 2,
    )

    job.run()

    trials = job.trials
    assert len(trials) == (12 if grid else 4)  # the grid: 2 units x (relu + tanh x 2) x 2 widths
    for trial in trials:
        params = _params(trial)
        assert trial.state == SUCCEEDED
        assert params["units"] in (1.0, 2.0) and params["act"] in ("relu", "tanh")
        assert params["width"] in (0.5, 1.0)
        assert ("dropout" in params) == (params["act"] == "tanh")
        assert grid or 1e-3 <= params["lr"] <= 1e-1
        seen = _trial_seen(emulator, job, trial)
        assert f"--units={int(params['units'])}" in seen["argv"]
        assert f"--width={params['width']!r}" in seen["argv"]
        assert f"--act={params['act']}" in seen["argv"]
        assert seen["env"]["CLOUD_ML_TRIAL_ID"] == trial.id
        assert seen["env"]["AIP_MODEL_DIR"].endswith(f"{os.sep}{trial.id}{os.sep}model{os.sep}")
        assert [m.step_count for m in trial.measurements] == [1, 2]
        assert trial.final_measurement.step_count == 2  # loss = base / epoch: best is last
        assert trial.start_time and trial.end_time
    if grid:
        assert len({tuple(sorted(_params(t).items())) for t in trials}) == 12


def test_grid_search_refuses_double_parameters(make_tuning_job, hpt):
    from google.api_core.exceptions import BadRequest

    space = {"lr": hpt.DoubleParameterSpec(min=1e-3, max=1e-1, scale="log")}
    job = make_tuning_job("grid-double", [], space, search_algorithm="grid")

    with pytest.raises(BadRequest, match="GRID_SEARCH cannot search DOUBLE"):
        job.run()


def test_measurements_are_visible_while_a_trial_runs(
    aiplatform, make_tuning_job, hpt, tmp_path, wait_for
):
    gate = tmp_path / "gate"
    space = {"act": hpt.CategoricalParameterSpec(values=["relu"])}
    job = make_tuning_job("live", ["--epochs=3", f"--gate={gate}"], space)
    job.run(sync=False)
    job.wait_for_resource_creation()

    def measured_trial():
        trials = aiplatform.HyperparameterTuningJob.get(job.resource_name).trials
        return trials and trials[0].state == ACTIVE and trials[0].measurements and trials[0]

    trial = wait_for(measured_trial)
    assert [m.step_count for m in trial.measurements] == [1]
    assert trial.measurements[0].metrics[0].metric_id == "loss"
    assert "final_measurement" not in trial

    gate.touch()
    job.wait()
    (trial,) = job.trials
    assert trial.state == SUCCEEDED
    assert [m.step_count for m in trial.measurements] == [1, 2, 3]


@pytest.mark.parametrize(("selection", "step", "value"), [("best", 2, 0.2), ("last", 3, 0.4)])
def test_final_measurement_follows_measurement_selection(
    selection, step, value, make_tuning_job, hpt
):
    space = {"act": hpt.CategoricalParameterSpec(values=["relu"])}
    job = make_tuning_job(
        f"select-{selection}",
        ["--epochs=3", "--curve=0.5,0.2,0.4"],
        space,
        measurement_selection=selection,
    )

    job.run()

    final = job.trials[0].final_measurement
    assert final.step_count == step
    assert final.metrics[0].value == pytest.approx(value)


def test_failing_trial_is_infeasible_and_the_job_still_succeeds(aiplatform, make_tuning_job, hpt):
    space = {"act": hpt.CategoricalParameterSpec(values=["relu", "tanh"])}
    job = make_tuning_job(
        "one-fails",
        ["--fail-when=tanh"],
        space,
        search_algorithm="grid",
        max_trial_count=2,
        parallel_trial_count=2,
    )

    job.run()

    assert job.state == aiplatform.gapic.JobState.JOB_STATE_SUCCEEDED
    by_act = {_params(t)["act"]: t for t in job.trials}
    assert by_act["relu"].state == SUCCEEDED
    failed = by_act["tanh"]
    assert failed.state == INFEASIBLE
    assert "boom: failing on purpose" in failed.infeasible_reason
    assert failed.measurements and "final_measurement" not in failed


def test_job_fails_once_max_failed_trial_count_is_reached(aiplatform, make_tuning_job, hpt):
    space = {"act": hpt.CategoricalParameterSpec(values=["tanh", "relu"])}
    job = make_tuning_job(
        "too-many-failures",
        ["--fail-when=tanh"],
        space,
        search_algorithm="grid",
        max_trial_count=2,
        max_failed_trial_count=1,
    )

    with pytest.raises(RuntimeError, match="max_failed_trial_count 1 reached"):
        job.run()

    assert job.state == aiplatform.gapic.JobState.JOB_STATE_FAILED
    assert [t.state for t in job.trials] == [INFEASIBLE]


def test_cancel_stops_the_running_trials(
    aiplatform, emulator, make_tuning_job, hpt, tmp_path, wait_for
):
    space = {"act": hpt.CategoricalParameterSpec(values=["relu", "tanh"])}
    job = make_tuning_job(
        "cancel-me",
        [f"--gate={tmp_path / 'never'}"],
        space,
        search_algorithm="grid",
        max_trial_count=2,
        parallel_trial_count=2,
    )
    job.run(sync=False)
    job.wait_for_resource_creation()

    def both_measured():
        trials = aiplatform.HyperparameterTuningJob.get(job.resource_name).trials
        return len(trials) == 2 and all(t.measurements for t in trials) and trials

    trials = wait_for(both_measured)
    pids = [_trial_seen(emulator, job, t)["pid"] for t in trials]

    job.cancel()
    with pytest.raises(RuntimeError, match="CANCELED"):
        job.wait()

    assert job.state == aiplatform.gapic.JobState.JOB_STATE_CANCELLED
    assert all(t.state == INFEASIBLE and "cancelled" in t.infeasible_reason for t in job.trials)
    assert not any(_alive(pid) for pid in pids)


def test_median_rule_stops_a_trial_worse_than_the_completed_ones(
    aiplatform, make_tuning_job, hpt, tmp_path, wait_for
):
    from google.cloud.aiplatform.compat.types import study

    space = {"act": hpt.CategoricalParameterSpec(values=["relu", "tanh"])}
    # tanh reports a worse loss, then waits (60 s) for a gate nobody opens, ignoring SIGTERM:
    # the emulator must escalate to SIGKILL after its grace period.
    args = ["--epochs=3", f"--gate={tmp_path / 'never'}", "--gate-when=tanh", "--ignore-sigterm"]
    job = make_tuning_job("median", args, space, search_algorithm="grid", max_trial_count=2)
    job._gca_resource.study_spec.median_automated_stopping_spec = (
        study.StudySpec.MedianAutomatedStoppingSpec()
    )
    job.run(sync=False)
    job.wait_for_resource_creation()

    def stopping():
        trials = aiplatform.HyperparameterTuningJob.get(job.resource_name).trials
        return len(trials) == 2 and trials[1].state == STOPPING

    wait_for(stopping)
    job.wait()

    relu, tanh = job.trials
    assert relu.state == SUCCEEDED and len(relu.measurements) == 3
    assert tanh.state == SUCCEEDED  # stopped early, then completed with what it reported
    assert [m.step_count for m in tanh.measurements] == [1]
    assert tanh.final_measurement.step_count == 1
    assert tanh.final_measurement.metrics[0].value > relu.final_measurement.metrics[0].value


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
