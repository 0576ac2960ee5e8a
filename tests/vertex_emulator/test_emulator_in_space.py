"""The emulator never starts a trial whose suggested values lie outside the job's parameter specs:
Vertex never does, so a suggestion algorithm's bug shows as an INFEASIBLE trial with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from vertex_emulator import tuning
from vertex_emulator.specs import CATEGORICAL, DISCRETE, DOUBLE, INTEGER, Param, outside
from vertex_emulator.suggest import Suggester

INFEASIBLE, SUCCEEDED = 5, 4  # Trial.State

ACT = Param(
    "act",
    CATEGORICAL,
    values=("relu", "tanh"),
    children=((("tanh",), Param("dropout", DISCRETE, values=(0.1, 0.2))),),
)
PARAMS = [Param("units", INTEGER, 1, 16), Param("lr", DOUBLE, 1e-3, 1e-1), ACT]


@pytest.mark.parametrize(
    "values",
    [
        {"units": 16, "lr": 1e-3, "act": "relu"},
        {"units": 1, "lr": 0.1, "act": "tanh", "dropout": 0.2},
        {"units": 3.0, "lr": 0.05, "act": "tanh", "dropout": 0.1},  # Vertex's floats
    ],
)
def test_values_inside_the_specs_pass(values):
    assert outside(PARAMS, values) == ""


@pytest.mark.parametrize(
    "values, problem",
    [
        ({"units": 17, "lr": 0.01, "act": "relu"}, "'units' 17 is outside [1, 16]"),
        ({"units": 2.5, "lr": 0.01, "act": "relu"}, "'units' 2.5 is not an integer"),
        ({"units": 2, "lr": 0.2, "act": "relu"}, "'lr' 0.2 is outside [0.001, 0.1]"),
        ({"units": 2, "lr": "x", "act": "relu"}, "'lr' 'x' is not a number"),
        ({"units": 2, "lr": 0.01, "act": "elu"}, "'act' 'elu' is not listed"),
        ({"units": 2, "lr": 0.01, "act": "tanh"}, "'dropout' is missing"),
        ({"units": 2, "lr": 0.01, "act": "tanh", "dropout": 0.3}, "'dropout' 0.3 is not listed"),
        (
            {"units": 2, "lr": 0.01, "act": "relu", "dropout": 0.1},
            "'dropout' is not active under its parent's value",
        ),
        ({"units": 2, "lr": 0.01, "act": "relu", "seed": 1}, "'seed' is not in the spec"),
        ({"lr": 0.01, "act": "relu"}, "'units' is missing"),
        ({"units": 2, "lr": 0.01, "act": "elu", "dropout": 0.1}, "'act' 'elu' is not listed"),
    ],
)
def test_values_outside_the_specs_are_named(values, problem):
    assert outside(PARAMS, values) == problem


class Scripted(Suggester):
    """Suggests the given parameter sets in turn (a stand-in for a buggy algorithm)."""

    def __init__(self, *suggestions: dict) -> None:
        self.suggestions = list(suggestions)
        self.told: list[tuple[str, float | None]] = []

    def suggest(self, trial_id: str) -> dict | None:
        return self.suggestions.pop(0) if self.suggestions else None

    def tell(self, trial_id: str, value: float | None) -> None:
        self.told.append((trial_id, value))


@pytest.mark.e2e
def test_an_out_of_space_suggestion_is_infeasible_and_never_started(
    aiplatform, make_custom_job, emulator, monkeypatch
):
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    scripted = Scripted({"units": 17}, {"units": 2})
    monkeypatch.setattr(tuning, "make_suggester", lambda *args: scripted)
    job = aiplatform.HyperparameterTuningJob(
        display_name="out-of-space",
        custom_job=make_custom_job("out-of-space", ["--epochs=1"]),
        metric_spec={"loss": "minimize"},
        parameter_spec={"units": hpt.IntegerParameterSpec(min=1, max=16, scale="linear")},
        max_trial_count=2,
        parallel_trial_count=1,
        max_failed_trial_count=2,
    )

    job.run()

    first, second = sorted(job.trials, key=lambda t: int(t.id))
    assert first.state == INFEASIBLE
    assert first.infeasible_reason == (
        "The trial could not start: its parameters are outside the study's specs: "
        "'units' 17 is outside [1, 16]"
    )
    assert [(p.parameter_id, p.value) for p in first.parameters] == [("units", 17.0)]
    assert second.state == SUCCEEDED
    assert scripted.told[0] == (first.id, None)  # the algorithm hears it was infeasible
    base = job._gca_resource.trial_job_spec.base_output_directory.output_uri_prefix
    assert Path(emulator.gs_to_local(f"{base}/{second.id}/model/seen.json")).exists()
    assert not Path(emulator.gs_to_local(f"{base}/{first.id}/model/seen.json")).exists()
