"""One malformed file a rule: each fails in one line naming the file, the field and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from search_spaces.loader import load_space
from trialkit.errors import SpaceError, UserError

BAD = Path(__file__).resolve().parent.parent / "bad_inputs" / "spaces"

# file stem -> (the field the message must name, a fragment of the problem or the fix)
CASES = {
    "syntax_error": (":4:", "YAML syntax error"),
    "top_level_list": ("top level", "must be a mapping (got a list)"),
    "empty_file": ("top level", "the file is empty"),
    "unknown_top_key": ("paramters", "unknown key (did you mean 'parameters'?)"),
    "unknown_parameter_key": ("parameters.learning_rate.scael", "did you mean 'scale'?"),
    "unknown_metric_key": ("metric.gaol", "did you mean 'goal'?"),
    "missing_metric": ("metric", "missing; add metric: {tag: val_rmse, goal: minimize}"),
    "missing_metric_tag": ("metric.tag", "missing; name the metric"),
    "missing_type": ("parameters.learning_rate.type", "missing; add type:"),
    "missing_max": ("parameters.nbuckets.max", "missing; an integer parameter needs min and max"),
    "min_is_string": ("parameters.learning_rate.min", "must be a number (got '1e-4', a string)"),
    "min_greater_than_max": ("parameters.nbuckets.min", "min (10) > max (5); swap min and max"),
    "min_equals_max": ("parameters.nbuckets.max", "min equals max (5)"),
    "log_min_zero": (
        "parameters.learning_rate.min",
        "log scale needs min > 0 (got 0); use a positive min or scale: linear",
    ),
    "reverse_log_negative": ("parameters.width.min", "reverse_log scale needs min > 0 (got -4)"),
    "integer_fractional_min": ("parameters.nbuckets.min", "needs a whole number (got 1.5)"),
    "categorical_numbers": (
        "parameters.units.values",
        'must be strings (got 16, int); quote it ("16") or use type: discrete',
    ),
    "categorical_duplicate": ("parameters.optimizer.values", "duplicate value 'adam'"),
    "categorical_empty_string": ("parameters.optimizer.values", "non-empty strings (got '')"),
    "categorical_empty": ("parameters.optimizer.values", "missing or empty"),
    "discrete_not_increasing": ("parameters.batch_size.values", "strictly increasing (64 then 32)"),
    "discrete_strings": ("parameters.batch_size.values", "discrete values must be numbers"),
    "discrete_too_many": ("parameters.batch_size.values", "1001 values; Vertex DISCRETE"),
    "duplicate_parameter": (":5:", "duplicate key 'learning_rate' (first at line 3)"),
    "empty_parameters": ("parameters", "empty; declare at least one parameter"),
    "parameters_as_list": ("parameters", "must be a mapping of name -> fields (got a list)"),
    "condition_unknown_parent": (
        "parameters.beta_1.condition.parent",
        "unknown parameter 'optimiser' (did you mean 'optimizer'?)",
    ),
    "condition_parent_declared_after": (
        "parameters.beta_1.condition.parent",
        "'optimizer' is declared after 'beta_1'; declare optimizer before beta_1",
    ),
    "condition_parent_double": (
        "parameters.warmup.condition.parent",
        "'learning_rate' is a double",
    ),
    "condition_value_not_in_parent": (
        "parameters.beta_1.condition.values",
        "'adamw' is not a value of 'optimizer'; use values optimizer can take (adam, sgd)",
    ),
    "condition_values_not_list": ("parameters.beta_1.condition.values", "must be a list"),
    "condition_missing_parent": ("parameters.beta_1.condition.parent", "missing"),
    "grid_double_without_step": (
        "parameters.learning_rate.step",
        "algorithm: grid cannot search a continuous double",
    ),
    "step_too_many_values": ("parameters.dropout.step", "gives 5001 values; Vertex DISCRETE"),
    "log_step_not_multiplier": ("parameters.units.step", "step is a multiplier and must be > 1"),
    "unknown_algorithm": ("algorithm", "unknown algorithm 'bayes' (did you mean 'bayesian'?)"),
    "unknown_goal": ("metric.goal", "unknown goal 'minimise' (did you mean 'minimize'?)"),
    "unknown_scale": ("parameters.learning_rate.scale", "unknown scale 'logarithmic'"),
    "unknown_type": ("parameters.nbuckets.type", "unknown type 'int' (did you mean 'integer'?)"),
    "unknown_measurement_selection": ("measurement_selection", "unknown selection 'latest'"),
    "unknown_early_stopping_policy": ("early_stopping.policy", "unknown policy 'medain'"),
    "budget_zero": ("budget.max_trials", "must be a positive integer (got 0)"),
    "budget_string": ("budget.parallel_trials", "must be a positive integer (got '2')"),
    "parallel_exceeds_max": ("budget.parallel_trials", "exceed max_trials (4)"),
    "step_on_categorical": ("parameters.optimizer.step", "categorical parameters take no step"),
    "scale_on_categorical": ("parameters.optimizer.scale", "categorical parameters take no scale"),
    "scale_on_boolean": ("parameters.use_bias.scale", "boolean parameters take no scale"),
    "bad_parameter_name": ("parameters.learning rate", "not a valid flag name"),
    "trainer_module_and_script": ("trainer", "gives both module and script"),
    "trainer_neither": ("trainer", "needs module or script"),
    "trainer_script_missing": ("trainer.script", "no such file"),
    "tuning_args_not_list": ("trainer.tuning_args", "must be a list of strings"),
    "tuning_args_not_strings": ("trainer.tuning_args", "must be a list of strings (got 3, int)"),
    "tuning_args_set_parameter": (
        "trainer.tuning_args",
        "sets the tuned parameter 'learning_rate'",
    ),
    "default_out_of_range": ("parameters.nbuckets.default", "12 is not a value"),
    "fixed_without_value": ("parameters.seed.value", "missing; a fixed parameter needs value"),
    "values_on_integer": ("parameters.nbuckets.values", "integer parameters take no values"),
}


def test_every_bad_file_has_a_case():
    assert sorted(p.stem for p in BAD.glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("stem", sorted(CASES))
def test_bad_file_is_refused_in_one_line(stem):
    field, fragment = CASES[stem]
    path = BAD / f"{stem}.yaml"
    with pytest.raises(SpaceError, match=re.escape(fragment)) as caught:
        load_space(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    if field.startswith(":"):  # a YAML-level error names the line
        assert message.startswith(f"{path}{field} ")
    else:
        assert message.startswith(f"{path}: {field}: ")
    assert "; " in message  # every message carries its fix
    assert isinstance(caught.value, UserError)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(SpaceError, match="no such file; check the path"):
        load_space(tmp_path / "nope.yaml")
