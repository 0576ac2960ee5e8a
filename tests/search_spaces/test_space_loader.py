"""The YAML format: the flights study, YAML 1.2 scalars, trainer resolution, defaults."""

from __future__ import annotations

import pytest

from search_spaces.loader import load_space, load_space_text
from search_spaces.model import Budget, EarlyStopping, Metric, Parameter, Trainer
from trialkit.errors import SpaceError

MINIMAL = """
metric: {tag: val_rmse, goal: minimize}
parameters:
  learning_rate: {type: double, min: 1e-4, max: 1e-2, scale: log}
"""


def test_flights_mirrors_the_seed_study(flights, flights_path):
    assert flights.name == "flights"
    assert flights.source == str(flights_path)
    assert flights.metric == Metric(tag="val_rmse", goal="minimize")
    assert flights.names == (
        "train_batch_size",
        "nbuckets",
        "dnn_hidden_units",
        "learning_rate",
        "nembeds",
    )
    assert flights.parameter("train_batch_size") == Parameter(
        "train_batch_size", "integer", min=16, max=256, scale="log"
    )
    assert flights.parameter("nbuckets") == Parameter("nbuckets", "integer", min=5, max=10)
    assert flights.parameter("dnn_hidden_units").values == (
        "64,16",
        "64,16,4",
        "64,64,64,8",
        "256,64,16",
    )
    assert flights.parameter("learning_rate") == Parameter(
        "learning_rate", "double", min=1e-4, max=1e-2, scale="log"
    )
    assert flights.parameter("nembeds") == Parameter("nembeds", "integer", min=3, max=10)
    assert flights.trainer == Trainer(
        module="trainer.task",
        tuning_args=(
            "--skip_full_eval",
            "--num_examples=10000",
            "--num_eval_examples=20000",
            "--num_epochs=2",
        ),
        finalize_args=(
            "--num_examples=100000",
            "--num_epochs=10",
            "--export_format=keras,saved_model",
        ),
        seed_flag="--seed",
    )
    assert flights.budget == Budget(max_trials=10, parallel_trials=2, max_failed_trials=3)
    assert (flights.algorithm, flights.measurement_selection) == ("bayesian", "best")
    assert flights.early_stopping == EarlyStopping(policy="none")


def test_defaults_and_name_from_the_file_stem(tmp_path):
    path = tmp_path / "small_study.yaml"
    path.write_text(MINIMAL)
    space = load_space(path)
    assert space.name == "small_study"
    assert space.trainer == Trainer()
    assert space.budget == Budget()
    assert space.algorithm == "bayesian"


def test_yaml_1_2_scalars():
    """1e-4 is a number (PyYAML alone reads a string); yes/no/on/off stay strings."""
    space = load_space_text(
        MINIMAL + "  answer: {type: categorical, values: [yes, no, on, off]}\n"
        "  flag: {type: boolean, default: true}\n",
        source="inline.yaml",
    )
    assert space.parameter("learning_rate").min == 0.0001
    assert space.parameter("answer").values == ("yes", "no", "on", "off")
    assert space.parameter("flag").default is True


def test_every_type_scale_step_and_condition_load(all_types):
    types = {p.type for p in all_types.parameters}
    scales = {p.scale for p in all_types.parameters}
    assert types == {"integer", "double", "categorical", "discrete", "boolean", "fixed"}
    assert scales == {"linear", "log", "reverse_log"}
    assert all_types.parameter("epsilon").condition.parent == "amsgrad"
    assert all_types.parameter("epsilon").condition.values == (True,)
    assert all_types.parameter("units").step_values() == (16, 32, 64, 128, 256)


def test_script_resolves_against_the_yaml_directory(tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "code").mkdir()
    script = tmp_path / "code" / "train.py"
    script.write_text("print('hi')\n")
    path = tmp_path / "studies" / "s.yaml"
    path.write_text(MINIMAL + "trainer: {script: ../code/train.py, tuning_args: [--quick]}\n")
    trainer = load_space(path).trainer
    assert trainer.script == str(script.resolve())
    assert trainer.module is None
    assert trainer.tuning_args == ("--quick",)


def test_load_space_text_names_its_source():
    with pytest.raises(SpaceError, match=r"^inline\.yaml: metric\.goal: missing"):
        load_space_text(MINIMAL.replace(", goal: minimize", ""), source="inline.yaml")


def test_hyperband_epochs_and_stopping_options():
    space = load_space_text(
        MINIMAL
        + "algorithm: hyperband\nhyperband_max_epochs: 9\n"
        + "early_stopping: {policy: decay_curve, min_steps: 2, min_trials: 3}\n",
        source="hb.yaml",
    )
    assert space.hyperband_max_epochs == 9
    assert space.early_stopping == EarlyStopping("decay_curve", min_steps=2, min_trials=3)
