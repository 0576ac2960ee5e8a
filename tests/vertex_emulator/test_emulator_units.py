"""The emulator's pure parts: spec checks, suggestions, the median rule, faults, path mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format

from trialkit.early_stopping import median_should_stop
from vertex_emulator.errors import ApiError
from vertex_emulator.faults import Faults, parse_faults
from vertex_emulator.specs import (
    CATEGORICAL,
    DOUBLE,
    INTEGER,
    LOG,
    REVERSE_LOG,
    Param,
    as_flag,
    params_from_study,
)
from vertex_emulator.storage import gs_to_local
from vertex_emulator.suggest import GRID_SEARCH, RandomSuggester, check_algorithm, grid

# Keras Tuner 1.4.8 calls threading.currentThread().getName(), deprecated since Python 3.10.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:(currentThread|getName)\(\) is deprecated:DeprecationWarning"
)


def _study(parameters: list[dict]):
    from google.cloud.aiplatform_v1.types import StudySpec

    spec = StudySpec.pb()()
    body = {"metrics": [{"metricId": "loss", "goal": 2}], "parameters": parameters}
    json_format.ParseDict(body, spec)
    return spec


CONDITIONAL = [
    {"parameterId": "units", "integerValueSpec": {"minValue": "1", "maxValue": "2"}},
    {
        "parameterId": "act",
        "categoricalValueSpec": {"values": ["relu", "tanh"]},
        "conditionalParameterSpecs": [
            {
                "parentCategoricalValues": {"values": ["tanh"]},
                "parameterSpec": {
                    "parameterId": "dropout",
                    "discreteValueSpec": {"values": [0.1, 0.2]},
                },
            }
        ],
    },
]


def test_grid_expands_children_only_under_their_parent_values():
    points = list(grid(params_from_study(_study(CONDITIONAL))))

    assert points == [
        {"units": 1, "act": "relu"},
        {"units": 1, "act": "tanh", "dropout": 0.1},
        {"units": 1, "act": "tanh", "dropout": 0.2},
        {"units": 2, "act": "relu"},
        {"units": 2, "act": "tanh", "dropout": 0.1},
        {"units": 2, "act": "tanh", "dropout": 0.2},
    ]


def test_grid_search_refuses_double_parameters():
    params = [Param("lr", DOUBLE, 0.1, 1.0)]

    with pytest.raises(ApiError, match="GRID_SEARCH cannot search DOUBLE"):
        check_algorithm(GRID_SEARCH, params)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"parameterId": "lr", "doubleValueSpec": {"maxValue": 1.0}, "scaleType": 2},
            "log scale needs a strictly positive range",
        ),
        (
            {"parameterId": "c", "categoricalValueSpec": {"values": ["a"]}, "scaleType": 1},
            "CATEGORICAL parameter takes no scale_type",
        ),
        (
            {"parameterId": "d", "discreteValueSpec": {"values": [2.0, 1.0]}},
            "discrete values must increase",
        ),
        (
            {
                "parameterId": "lr",
                "doubleValueSpec": {"minValue": 0.1, "maxValue": 1.0},
                "conditionalParameterSpecs": [
                    {
                        "parentDiscreteValues": {"values": [0.5]},
                        "parameterSpec": {
                            "parameterId": "x",
                            "categoricalValueSpec": {"values": ["a"]},
                        },
                    }
                ],
            },
            "DOUBLE parameter cannot have conditional specs",
        ),
    ],
)
def test_specs_vertex_refuses_are_refused_with_400(spec, message):
    with pytest.raises(ApiError, match=message) as caught:
        params_from_study(_study([spec]))
    assert caught.value.http_status == 400


def test_random_search_is_seeded_and_respects_scales():
    params = [
        Param("lr", DOUBLE, 1e-4, 1e-1, scale=LOG),
        Param("beta", DOUBLE, 0.9, 0.999, scale=REVERSE_LOG),
        Param("units", INTEGER, 8, 512, scale=LOG),
        Param("act", CATEGORICAL, values=("relu", "tanh")),
    ]
    first = [RandomSuggester(params, seed=7).suggest(str(i)) for i in range(1)]
    again = [RandomSuggester(params, seed=7).suggest(str(i)) for i in range(1)]
    assert first == again

    draws = RandomSuggester(params, seed=1)
    values = [draws.suggest(str(i)) for i in range(300)]
    assert all(1e-4 <= v["lr"] <= 1e-1 and 0.9 <= v["beta"] <= 0.999 for v in values)
    assert all(isinstance(v["units"], int) and 8 <= v["units"] <= 512 for v in values)
    # log-uniform: about a third of the draws below 1e-3 (a linear draw would give ~1%).
    assert 60 < sum(v["lr"] < 1e-3 for v in values) < 140


def test_flags_use_int_text_for_integers_and_float_text_for_discrete():
    assert as_flag("units", 5) == "--units=5"
    assert as_flag("width", 256.0) == "--width=256.0"
    assert as_flag("act", "tanh") == "--act=tanh"


def test_bayesian_suggester_fits_its_gaussian_process_after_the_random_points(tmp_path):
    from vertex_emulator.suggest import BayesianSuggester

    params = [Param("x", DOUBLE, 0.0, 1.0)]
    suggester = BayesianSuggester(params, "loss", minimize=True, seed=3, state_dir=tmp_path)
    for trial in ("1", "2", "3"):  # Keras Tuner's random start: max(3 * dims, 3) points
        x = suggester.suggest(trial)["x"]
        suggester.tell(trial, (x - 0.3) ** 2)

    guided = suggester.suggest("4")

    assert 0.0 <= guided["x"] <= 1.0
    assert suggester.oracle.gpr.X_train_.shape == (3, 1)  # the GP was fitted on the 3 results


# Running averages of the completed trials: 0.4, 0.5, 0.6 at step 1 (median 0.5);
# 0.2, 0.25, 0.3 at step 2 (median 0.25).
COMPLETED = [[(1, 0.4), (2, 0.0)], [(1, 0.5), (2, 0.0)], [(1, 0.6), (2, 0.0)]]


@pytest.mark.parametrize(
    ("current", "minimize", "stop"),
    [
        ([(1, 0.9)], True, True),  # worse than the step-1 median
        ([(1, 0.5)], True, False),  # equal is not strictly worse; later steps do not count yet
        ([(1, 0.9), (2, 0.2)], True, False),  # its best so far beats the step-2 median
        ([(1, 0.9), (2, 0.3)], True, True),
        ([(1, 0.1)], False, True),  # maximising: below the median stops
    ],
)
def test_median_rule(current, minimize, stop):
    assert median_should_stop(current, COMPLETED, minimize) is stop


def test_median_rule_needs_completed_trials():
    assert median_should_stop([(1, 10.0)], [], minimize=True) is False


def test_faults_count_down_and_match_method_and_path():
    faults = Faults()
    faults.inject(503, count=2, pattern="hyperparameterTuningJobs$", method="POST")

    assert faults.take("GET", "/v1/p/hyperparameterTuningJobs") is None
    assert faults.take("POST", "/v1/p/hyperparameterTuningJobs") == 503
    assert faults.take("POST", "/v1/p/hyperparameterTuningJobs") == 503
    assert faults.take("POST", "/v1/p/hyperparameterTuningJobs") is None


def test_faults_from_the_environment_variable():
    compact = parse_faults(r"503:2:POST:hyperparameterTuningJobs;429:1")
    as_json = parse_faults('[{"status": 503, "count": 2, "method": "POST", "pattern": "x"}]')

    assert compact == [
        {"status": 503, "count": 2, "pattern": "hyperparameterTuningJobs", "method": "POST"},
        {"status": 429, "count": 1, "pattern": "", "method": "*"},
    ]
    assert as_json == [{"status": 503, "count": 2, "pattern": "x", "method": "POST"}]


def test_gs_paths_map_under_the_workdir(tmp_path):
    assert gs_to_local("gs://b/x/y/", tmp_path) == Path(tmp_path, "gcs", "b", "x", "y")
    with pytest.raises(ValueError, match="relative path"):
        gs_to_local("gs://b/../etc", tmp_path)
    with pytest.raises(ValueError, match="not a gs://"):
        gs_to_local("/local/path", tmp_path)
