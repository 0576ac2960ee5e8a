"""search_spaces/membership.py: what lies inside a space, and what maps back safely.

The regression at its cause: Keras Tuner 1.4.8's Int.prob_to_value(1.0) is max + 1 on a log or
reverse_log scale without step, and the Bayesian oracle's optimiser reaches that bound.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from search_spaces.keras_tuner_compiler import to_hyperparameters
from search_spaces.membership import (
    DROP,
    NO_FIX,
    OutOfSpace,
    check,
    into_space,
    judge,
    violations,
)
from search_spaces.model import Condition, Parameter, SearchSpace


def space_of(*parameters: Parameter) -> SearchSpace:
    return SearchSpace(name="s", parameters=parameters)


def keras_tuner_hp(p: Parameter):
    """The Keras Tuner hyperparameter our compiler declares for `p`."""
    (hp,) = to_hyperparameters(space_of(p)).space
    return hp


# -- the cause: Keras Tuner's boundary values --------------------------------------------------

BATCH = dict(name="train_batch_size", type="integer", min=16, max=256)


@pytest.mark.parametrize("scale", ["log", "reverse_log"])
def test_keras_tuner_int_at_prob_one_is_one_past_max_and_maps_back_to_max(scale):
    p = Parameter(**BATCH, scale=scale)
    raw = keras_tuner_hp(p).prob_to_value(1.0)
    assert raw == 257  # Keras Tuner 1.4.8: samples [min, max + 1), int() of the end point
    with pytest.raises(OutOfSpace, match=r"train_batch_size: 257 is one past max 256"):
        check(space_of(p), {p.name: raw})
    mapped, changes = into_space(space_of(p), {p.name: raw})
    assert mapped == {p.name: 256}
    assert [(c.parameter, c.value, c.fix) for c in changes] == [(p.name, 257, 256)]


@pytest.mark.parametrize(
    "scale, step",
    [("linear", None), ("linear", 16), ("log", 2), ("reverse_log", 2), ("log", None)],
)
@pytest.mark.parametrize("prob", [0.0, 1e-12, 0.5, 1 - 1e-12, 1.0])
def test_every_keras_tuner_int_value_lands_inside_once_mapped(scale, step, prob):
    p = Parameter(**BATCH, scale=scale, step=step)
    raw = keras_tuner_hp(p).prob_to_value(prob)
    mapped, _ = into_space(space_of(p), {p.name: raw})
    assert p.allows(mapped[p.name]) and 16 <= mapped[p.name] <= 256
    if step is not None or scale == "linear":  # Keras Tuner caps a stepped index itself
        assert mapped[p.name] == raw


def test_keras_tuner_grid_of_a_log_stepped_int_is_floats_mapped_to_equal_ints():
    """Int.values (what the grid oracle walks) is min * math.pow(step, i): floats."""
    p = Parameter(**BATCH, scale="log", step=2)
    grid = list(keras_tuner_hp(p).values)
    assert grid == [16.0, 32.0, 64.0, 128.0, 256.0] and isinstance(grid[0], float)
    for value in grid:
        mapped, changes = into_space(space_of(p), {p.name: value})
        assert mapped[p.name] == value and type(mapped[p.name]) is int
        assert str(changes[0]) == f"train_batch_size: {value!r} is a float, not an integer"


def test_keras_tuner_float_misses_its_bounds_by_rounding_and_maps_back():
    momentum = Parameter("momentum", "double", min=0.5, max=0.999, scale="reverse_log")
    small = Parameter("lr", "double", min=1e-4, max=1.0, scale="reverse_log")
    assert keras_tuner_hp(momentum).prob_to_value(1.0) > 0.999  # 0.9990000000000001
    assert keras_tuner_hp(small).prob_to_value(0.0) < 1e-4  # 9.999999999998899e-05
    space = space_of(momentum, small)
    raw = {"momentum": keras_tuner_hp(momentum).prob_to_value(1.0)}
    raw["lr"] = keras_tuner_hp(small).prob_to_value(0.0)
    mapped, changes = into_space(space, raw)
    assert mapped == {"momentum": 0.999, "lr": 1e-4}
    assert {str(c) for c in changes} == {
        f"momentum: {raw['momentum']!r} is above max 0.999 by rounding error",
        f"lr: {raw['lr']!r} is below min 0.0001 by rounding error",
    }


def test_a_stepped_float_on_keras_tuner_grid_is_inside_as_it_is():
    p = Parameter("x", "double", min=0.0, max=1.0, step=0.1)
    values = list(keras_tuner_hp(p).values)
    assert 0.30000000000000004 in values  # 0.1 * 3: Keras Tuner's own grid value
    for value in values:
        assert violations(space_of(p), {"x": value}) == ()


@pytest.mark.parametrize("prob", [0.0, 1.0, 1 - 1e-15, 0.37])
def test_bayesian_vector_at_any_point_maps_inside_every_type(all_types, prob):
    """The Bayesian oracle's own vector -> values, at the bounds of [0, 1] and inside."""
    import keras_tuner as kt

    oracle = kt.oracles.BayesianOptimizationOracle(
        objective=kt.Objective("val_accuracy", "max"),
        hyperparameters=to_hyperparameters(all_types),
        max_trials=3,
    )
    raw = oracle._vector_to_values(np.full(len(oracle._nonfixed_space()), prob))
    mapped, changes = into_space(all_types, raw)
    assert violations(all_types, mapped) == ()
    assert {c.parameter for c in changes} <= {"width", "momentum"}  # reverse_log Int and Float
    if prob == 1.0:
        assert raw["width"] == 513 and mapped["width"] == 512


# -- the checker, type by type -----------------------------------------------------------------

P = {
    "int": Parameter("n", "integer", min=1, max=10),
    "int_step": Parameter("n", "integer", min=16, max=256, step=16),
    "double": Parameter("x", "double", min=0.0, max=1.0),
    "double_log": Parameter("x", "double", min=1e-4, max=1e-1, scale="log"),
    "double_step": Parameter("x", "double", min=0.0, max=0.5, step=0.125),
    "discrete": Parameter("b", "discrete", values=(32, 64, 128)),
    "discrete_float": Parameter("w", "discrete", values=(0, 1e-4, 1e-3)),
    "categorical": Parameter("opt", "categorical", values=("adam", "sgd")),
    "boolean": Parameter("flag", "boolean"),
    "fixed": Parameter("seed", "fixed", value=42),
    "fixed_text": Parameter("act", "fixed", value="relu"),
}

INSIDE = [
    ("int", 1),
    ("int", 10),
    ("int_step", 256),
    ("double", 0.0),
    ("double", 1),
    ("double_log", 0.1),
    ("double_step", 0.375),
    ("discrete", 64),
    ("discrete", 64.0),  # how Vertex sends it
    ("discrete_float", 1e-4),
    ("categorical", "sgd"),
    ("boolean", False),
    ("fixed", 42),
    ("fixed_text", "relu"),
]


@pytest.mark.parametrize("kind, value", INSIDE)
def test_values_inside_have_no_violation(kind, value):
    assert judge(P[kind], value) == ("", value)


MAPPABLE = [
    ("int", 11, 10, r"11 is one past max 10"),
    ("int", 0, 1, r"0 is one below min 1"),
    ("int", 7.0, 7, r"7\.0 is a float, not an integer"),
    ("int", 11.0, 10, r"11\.0 is one past max 10"),
    ("int_step", 257, 256, r"257 is one past max 256"),  # 256 is on the grid
    ("double", 1.0000000000000002, 1.0, r"above max 1\.0 by rounding error"),
    ("double", -1e-17, 0.0, r"below min 0\.0 by rounding error"),
    ("double_log", 0.1000000000000001, 0.1, r"above max 0\.1 by rounding error"),
    ("double_step", 0.5000000000000001, 0.5, r"above max 0\.5 by rounding error"),
    ("fixed", 42.0, 42, r"42\.0 is a float, the fixed value 42 is not"),
]


@pytest.mark.parametrize("kind, value, fix, problem", MAPPABLE)
def test_rounding_and_boundary_values_map_back(kind, value, fix, problem):
    found, mapped = judge(P[kind], value)
    assert mapped == fix and type(mapped) is type(fix)
    assert found and re.search(problem, found)
    assert P[kind].allows(mapped)


UNMAPPABLE = [
    ("int", 12, r"12 is above max 10"),
    ("int", -1, r"-1 is below min 1"),
    ("int", 7.5, r"7\.5 is not a whole number"),
    ("int", "7", r"'7' is not an integer"),
    ("int", True, r"True is not an integer"),
    ("int", float("nan"), r"nan is not an integer"),
    ("int_step", 40, r"40 is not on the step grid \(16, 32, 48, 64, 80, 96, \.\.\., 256\)"),
    ("double", 1.001, r"1\.001 is above max 1\.0"),
    ("double", float("inf"), r"inf is not a number"),
    ("double", "0.5", r"'0\.5' is not a number"),
    ("double_log", 0.99e-4, r"9\.9e-05 is below min 0\.0001"),
    ("double_step", 0.3, r"0\.3 is not on the step grid \(0\.0, 0\.125"),
    ("discrete", 48, r"48 is not one of 32, 64, 128"),
    ("discrete_float", 2e-4, r"0\.0002 is not one of 0, 0\.0001, 0\.001"),
    ("categorical", "adma", r"'adma' is not one of adam, sgd \(did you mean 'adam'\?\)"),
    ("categorical", 1, r"1 is not one of adam, sgd$"),
    ("boolean", "true", r"'true' is not true or false"),
    ("boolean", 1, r"1 is not true or false"),
    ("fixed", 41, r"41 is not the fixed value 42"),
    ("fixed_text", "tanh", r"'tanh' is not the fixed value 'relu'"),
]


@pytest.mark.parametrize("kind, value, problem", UNMAPPABLE)
def test_values_that_cannot_be_mapped_are_named_and_refused(kind, value, problem):
    p = P[kind]
    found, fix = judge(p, value)
    assert fix is NO_FIX
    with pytest.raises(OutOfSpace, match=rf"of 's': {p.name}: {problem}"):
        into_space(space_of(p), {p.name: value})


def test_a_stepped_int_whose_max_is_off_the_grid_is_not_mapped_onto_it():
    p = Parameter("n", "integer", min=16, max=250, step=16)  # grid ends at 240
    with pytest.raises(OutOfSpace, match=r"n: 251 is not on the step grid"):
        into_space(space_of(p), {"n": 251})


def test_missing_and_unknown_parameters_are_refused():
    space = space_of(P["int"], P["categorical"])
    with pytest.raises(OutOfSpace, match=r"n: missing, but every trial needs it"):
        into_space(space, {"opt": "adam"})
    with pytest.raises(OutOfSpace, match=r"nn: not a parameter of the space \(did you mean 'n'"):
        into_space(space, {"n": 3, "opt": "adam", "nn": 3})


def test_every_unmappable_value_is_named_and_the_mappable_ones_are_not():
    space = space_of(P["int"], P["double"], P["categorical"])
    with pytest.raises(OutOfSpace) as err:
        into_space(space, {"n": 11, "x": 2.0, "opt": "rms"})
    assert [v.parameter for v in err.value.violations] == ["x", "opt"]
    assert str(err.value) == (
        "outside the search space of 's': x: 2.0 is above max 1.0; "
        "opt: 'rms' is not one of adam, sgd"
    )


def test_values_are_not_changed_in_place():
    values = {"n": 11}
    mapped, _ = into_space(space_of(P["int"]), values)
    assert values == {"n": 11} and mapped == {"n": 10}


# -- conditions --------------------------------------------------------------------------------


def conditional_space() -> SearchSpace:
    return space_of(
        Parameter("opt", "categorical", values=("adam", "sgd")),
        Parameter("beta", "double", min=0.8, max=0.99, condition=Condition("opt", ("adam",))),
        Parameter("amsgrad", "boolean", condition=Condition("opt", ("adam",))),
        Parameter("eps", "discrete", values=(1e-8, 1e-7), condition=Condition("amsgrad", (True,))),
    )


@pytest.mark.parametrize(
    "values",
    [
        {"opt": "sgd"},
        {"opt": "adam", "beta": 0.9, "amsgrad": False},
        {"opt": "adam", "beta": 0.9, "amsgrad": True, "eps": 1e-7},
    ],
)
def test_active_children_present_and_inactive_ones_absent_is_inside(values):
    assert violations(conditional_space(), values) == ()


def test_an_inactive_child_given_is_dropped_and_its_own_child_too():
    values = {"opt": "sgd", "beta": 0.9, "amsgrad": True, "eps": 1e-8}
    found = violations(conditional_space(), values)
    assert [(v.parameter, v.fix) for v in found] == [
        ("beta", DROP),
        ("amsgrad", DROP),
        ("eps", DROP),
    ]
    assert str(found[0]) == (
        "beta: given (0.9) but inactive: opt='sgd', and beta is active only when opt is one "
        "of ['adam']"
    )
    assert str(found[2]) == "eps: given (1e-08) but inactive: its parent amsgrad is inactive"
    assert into_space(conditional_space(), values)[0] == {"opt": "sgd"}


def test_an_active_child_missing_cannot_be_mapped():
    with pytest.raises(OutOfSpace, match=r"eps: missing, but active: amsgrad=True"):
        into_space(conditional_space(), {"opt": "adam", "beta": 0.9, "amsgrad": True})


def test_conditions_are_judged_on_the_parents_mapped_value():
    """An integer parent one past max maps to max, which may activate a child."""
    space = space_of(
        Parameter("n", "integer", min=1, max=4, scale="log"),
        Parameter("wide", "boolean", condition=Condition("n", (4,))),
    )
    assert into_space(space, {"n": 5, "wide": True})[0] == {"n": 4, "wide": True}
    with pytest.raises(OutOfSpace, match=r"wide: missing, but active: n=4"):
        into_space(space, {"n": 5})


def test_a_child_of_an_unmappable_parent_is_judged_on_its_value_only():
    found = violations(conditional_space(), {"opt": "rms", "beta": 2.0})
    assert [str(v) for v in found] == [
        "opt: 'rms' is not one of adam, sgd",
        "beta: 2.0 is above max 0.99",
    ]
