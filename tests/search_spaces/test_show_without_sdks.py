"""`dualtune space show` writes both targets from the data model, without keras_tuner (which
imports TensorFlow) or aiplatform: byte for byte what the SDKs produce, and fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from search_spaces.keras_tuner_compiler import hyperparameters_config, to_hyperparameters
from search_spaces.loader import load_space
from search_spaces.model import Condition, EarlyStopping, Metric, Parameter, SearchSpace
from search_spaces.vertex_compiler import study_spec_json
from search_spaces.vertex_json import study_spec_dict

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"


def edges(**changes) -> SearchSpace:
    """What the example files lack: zero bounds (proto3 leaves zeros out), the default
    algorithm (no algorithm key), decay-curve stopping without elapsed time, an integer parent,
    a discrete parent of whole numbers, a boolean default and fixed values of every kind."""
    params = (
        Parameter("lr", "double", min=0, max=1),
        Parameter("n", "integer", min=0, max=5, default=3),
        Parameter("s", "integer", min=1, max=9, step=1),
        Parameter("r", "double", min=0.1, max=0.9, scale="reverse_log", default=0.5),
        Parameter("b", "discrete", values=(8, 16, 32), default=16),
        Parameter("w", "double", min=0, max=1, step=0.25, condition=Condition("n", (0, 5))),
        Parameter("flag", "boolean", default=True, condition=Condition("b", (16, 32))),
        Parameter("deep", "categorical", values=("a", "b"), condition=Condition("flag", (True,))),
        Parameter("f1", "fixed", value=1.5),
        Parameter("f2", "fixed", value=True),
        Parameter("f3", "fixed", value=7),
    )
    base = dict(
        name="edges",
        parameters=params,
        metric=Metric("loss", "minimize"),
        algorithm="bayesian",
        measurement_selection="best",
        early_stopping=EarlyStopping(policy="decay_curve", use_elapsed_duration=False),
    )
    base.update(changes)
    return SearchSpace(**base)


SPACES = {
    "flights": lambda: load_space(REPO / "search_spaces" / "flights.yaml"),
    "all_types": lambda: load_space(GOLDEN / "all_types.yaml"),
    "toy": lambda: load_space(REPO / "tests" / "fixtures" / "toy.yaml"),
    "edges": edges,
    "edges-grid-median": lambda: edges(
        algorithm="grid",
        early_stopping=EarlyStopping(policy="median", use_elapsed_duration=True),
        parameters=(edges().parameters[2], edges().parameters[4]),
    ),
    "edges-no-stopping": lambda: edges(
        algorithm="random", early_stopping=EarlyStopping(policy="none")
    ),
}


@pytest.mark.parametrize("name", SPACES)
def test_keras_tuner_config_is_what_keras_tuner_writes(name):
    space = SPACES[name]()
    assert json.dumps(hyperparameters_config(space)) == json.dumps(
        to_hyperparameters(space).get_config()
    )


@pytest.mark.parametrize("name", SPACES)
def test_vertex_json_is_what_the_sdk_writes(name):
    space = SPACES[name]()
    assert json.dumps(study_spec_dict(space)) == json.dumps(study_spec_json(space))


SHOW = """
import sys
from dualtune.cli import main
code = main(["space", "show", sys.argv[1], "--target", sys.argv[2]])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "keras_tuner"})
heavy += [m for m in ("google.cloud.aiplatform", "google.protobuf") if m in sys.modules]
print("HEAVY", heavy, code)
"""


@pytest.mark.parametrize(
    ("target", "golden"),
    [("keras-tuner", "all_types.keras_tuner.json"), ("vertex", "all_types.vertex.json")],
)
def test_space_show_imports_no_sdk_and_prints_the_golden_file(target, golden):
    done = subprocess.run(
        [sys.executable, "-c", SHOW, str(GOLDEN / "all_types.yaml"), target],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    *shown, verdict = done.stdout.strip().splitlines()
    assert verdict == "HEAVY [] 0", done.stderr
    assert "\n".join(shown) + "\n" == (GOLDEN / golden).read_text()
    assert done.stderr == ""
