"""Compiling to Vertex AI: parameter specs, the StudySpec JSON the SDK sends, early stopping."""

from __future__ import annotations

import dataclasses
import json

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from google.cloud.aiplatform import hyperparameter_tuning as hpt
from google.cloud.aiplatform.compat.types import study as gca_study
from google.protobuf import json_format

from search_spaces import vertex_compiler as vc
from search_spaces.model import EarlyStopping
from search_spaces.show import show
from trialkit.errors import SpaceError


def test_golden_all_types(all_types, golden):
    golden("all_types.vertex.json", show(all_types, "vertex"))


def test_golden_flights(flights, golden):
    golden("flights.vertex.json", show(flights, "vertex"))


def _sdk_study_spec(space):
    """What the real SDK puts in the job it sends: HyperparameterTuningJob built offline."""
    common = dict(project="p", location="us-central1", credentials=AnonymousCredentials())
    custom_job = aiplatform.CustomJob(
        display_name="trial",
        worker_pool_specs=[
            {
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "container_spec": {"image_uri": "example.com/trainer"},
            }
        ],
        staging_bucket="gs://b",
        **common,
    )
    job = aiplatform.HyperparameterTuningJob(
        display_name="study",
        custom_job=custom_job,
        metric_spec=vc.metric_spec(space),
        parameter_spec=vc.to_parameter_specs(space),
        max_trial_count=space.budget.max_trials,
        parallel_trial_count=space.budget.parallel_trials,
        search_algorithm=vc.search_algorithm(space),
        measurement_selection=vc.measurement_selection(space),
        **common,
    )
    vc.apply_early_stopping(job._gca_resource.study_spec, space)
    return job._gca_resource.study_spec


def test_study_spec_json_is_what_the_sdk_builds(all_types, flights):
    for space in (all_types, flights):
        sdk = _sdk_study_spec(space)
        assert vc.study_spec_json(space) == json_format.MessageToDict(sdk._pb)
        wire = json_format.MessageToDict(sdk._pb, use_integers_for_enums=True)
        assert vc.study_spec_json(space, numeric_enums=True) == wire


def test_numeric_enums_match_the_wire_codes(all_types, flights):
    wire = vc.study_spec_json(all_types, numeric_enums=True)
    assert wire["metrics"] == [{"metricId": "val_accuracy", "goal": 1}]
    assert wire["algorithm"] == 3 and wire["measurementSelectionType"] == 1
    flights_wire = vc.study_spec_json(flights, numeric_enums=True)
    assert "algorithm" not in flights_wire  # absent = Bayesian
    assert flights_wire["measurementSelectionType"] == 2
    assert flights_wire["parameters"][0]["scaleType"] == 2


def test_types_where_vertex_has_no_equivalent(all_types):
    specs = vc.to_parameter_specs(all_types)
    assert isinstance(specs["units"], hpt.DiscreteParameterSpec)  # integer + step
    assert specs["units"].values == [16.0, 32.0, 64.0, 128.0, 256.0]
    assert specs["units"].scale == "log"
    assert isinstance(specs["dropout"], hpt.DiscreteParameterSpec)  # double + step
    assert specs["dropout"].values == [0.0, 0.125, 0.25, 0.375, 0.5]
    assert isinstance(specs["seed"], hpt.CategoricalParameterSpec)  # fixed
    assert specs["seed"].values == ["42"]
    amsgrad = specs["optimizer"].conditional_parameter_spec["amsgrad"]  # boolean
    assert isinstance(amsgrad, hpt.CategoricalParameterSpec)
    assert amsgrad.values == ["false", "true"]


def test_conditional_children_hang_off_their_parent(all_types):
    specs = vc.to_parameter_specs(all_types)
    assert "beta_1" not in specs and "epsilon" not in specs
    optimizer = specs["optimizer"].conditional_parameter_spec
    assert set(optimizer) == {"beta_1", "amsgrad"}
    assert optimizer["beta_1"].parent_values == ["adam"]
    epsilon = optimizer["amsgrad"].conditional_parameter_spec["epsilon"]
    assert epsilon.parent_values == ["true"]  # a boolean parent is CATEGORICAL
    assert specs["layers"].conditional_parameter_spec["residual"].parent_values == [3, 4]
    assert specs["batch_size"].conditional_parameter_spec["head"].parent_values == [64.0, 128.0]


def test_values_coming_back_cast_to_declared_types(all_types):
    # Vertex returns INTEGER/DOUBLE/DISCRETE as floats and CATEGORICAL as strings.
    raw = {"layers": 3.0, "units": 64.0, "amsgrad": "true", "seed": "42", "batch_size": 64.0}
    assert all_types.cast_values(raw) == {
        "layers": 3,
        "units": 64,
        "amsgrad": True,
        "seed": 42,
        "batch_size": 64,
    }


def test_algorithm_and_selection(flights):
    assert vc.search_algorithm(flights) is None
    assert vc.measurement_selection(flights) == "best"
    assert vc.metric_spec(flights) == {"val_rmse": "minimize"}
    assert vc.search_algorithm(dataclasses.replace(flights, algorithm="random")) == "random"
    no_double = tuple(p for p in flights.parameters if p.type != "double")
    grid = dataclasses.replace(flights, parameters=no_double, algorithm="grid")
    assert vc.search_algorithm(grid) == "grid"


def test_hyperband_is_refused_naming_the_field(flights):
    space = dataclasses.replace(flights, algorithm="hyperband")
    with pytest.raises(SpaceError, match=r"flights\.yaml: algorithm: hyperband is not a Vertex"):
        vc.search_algorithm(space)
    with pytest.raises(SpaceError, match="--backend local"):
        show(space, "vertex")


@pytest.mark.parametrize(
    ("policy", "field"),
    [("median", "median_automated_stopping_spec"), ("decay_curve", "decay_curve_stopping_spec")],
)
def test_apply_early_stopping(flights, policy, field):
    for elapsed in (False, True):
        space = dataclasses.replace(
            flights, early_stopping=EarlyStopping(policy, use_elapsed_duration=elapsed)
        )
        spec = gca_study.StudySpec()
        vc.apply_early_stopping(spec, space)
        assert spec._pb.WhichOneof("automated_stopping_spec") == field
        assert getattr(spec, field).use_elapsed_duration is elapsed
        raw = gca_study.StudySpec.pb()()  # a raw protobuf message works as well
        vc.apply_early_stopping(raw, space)
        assert raw.WhichOneof("automated_stopping_spec") == field


def test_no_early_stopping_leaves_the_proto_alone(flights):
    spec = gca_study.StudySpec()
    vc.apply_early_stopping(spec, flights)
    assert spec._pb.WhichOneof("automated_stopping_spec") is None
    assert "medianAutomatedStoppingSpec" not in json.dumps(vc.study_spec_json(flights))
