"""The data model on its own: casting values back from a backend, steps, validation in code."""

from __future__ import annotations

import dataclasses

import pytest

from search_spaces.model import Condition, Parameter, SearchSpace, Trainer
from trialkit.errors import SpaceError


def test_cast_what_vertex_sends_back():
    assert Parameter("n", "integer", min=1, max=10).cast(9.0) == 9
    assert Parameter("n", "integer", min=1, max=10).cast("9.0") == 9
    assert Parameter("lr", "double", min=0.1, max=1).cast("0.5") == 0.5
    assert Parameter("b", "boolean").cast("false") is False
    assert Parameter("b", "boolean").cast("true") is True
    assert Parameter("c", "categorical", values=("a", "b")).cast("b") == "b"
    with pytest.raises(ValueError, match="not an integer"):
        Parameter("n", "integer", min=1, max=10).cast(9.5)


def test_cast_discrete_and_fixed_keep_their_kind():
    whole = Parameter("bs", "discrete", values=(16, 32))
    assert whole.cast(32.0) == 32 and isinstance(whole.cast(32.0), int)
    assert Parameter("wd", "discrete", values=(0, 0.5)).cast("0.5") == 0.5
    assert Parameter("seed", "fixed", value=42).cast("42") == 42
    assert Parameter("flag", "fixed", value=True).cast("false") is False
    assert Parameter("act", "fixed", value="relu").cast("relu") == "relu"


def test_flags_in_declaration_order():
    space = SearchSpace(
        "s",
        (Parameter("a", "integer", min=1, max=5), Parameter("b", "boolean")),
    )
    assert space.flags({"b": True, "a": 3}) == ["--a=3", "--b=true"]
    assert space.cast_values({"a": 3.0, "b": "true", "tuner/epochs": 2}) == {"a": 3, "b": True}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"type": "integer", "min": 6, "max": 13, "step": 3}, (6, 9, 12)),
        ({"type": "integer", "min": 2, "max": 32, "step": 2, "scale": "log"}, (2, 4, 8, 16, 32)),
        (
            {"type": "integer", "min": 1, "max": 100, "step": 10, "scale": "reverse_log"},
            (1, 91, 100),
        ),
        ({"type": "double", "min": 0, "max": 1, "step": 0.1}, tuple(i / 10 for i in range(11))),
        (
            {"type": "double", "min": 1e-3, "max": 10, "step": 10, "scale": "log"},
            (0.001, 0.01, 0.1, 1, 10),
        ),
    ],
)
def test_step_follows_keras_tuner(fields, expected):
    """Added on a linear scale, multiplied on log scales; floating noise rounded away."""
    assert Parameter("p", **fields).step_values() == pytest.approx(expected)


def test_validation_applies_to_spaces_built_in_code():
    with pytest.raises(SpaceError, match=r"^parameters\.lr\.min: log scale needs min > 0"):
        Parameter("lr", "double", min=0, max=1, scale="log")
    with pytest.raises(SpaceError, match=r"^parameters\.b\.condition\.parent: unknown parameter"):
        SearchSpace("s", (Parameter("b", "boolean", condition=Condition("a", (True,))),))
    with pytest.raises(SpaceError, match=r"^parameters\.b\.condition\.parent: a parameter cannot"):
        SearchSpace("s", (Parameter("b", "boolean", condition=Condition("b", (True,))),))
    with pytest.raises(SpaceError, match=r"^parameters: empty"):
        SearchSpace("s", ())


def test_replace_revalidates():
    space = SearchSpace("s", (Parameter("lr", "double", min=0.1, max=1),))
    assert dataclasses.replace(space, algorithm="random").algorithm == "random"
    with pytest.raises(SpaceError, match=r"^parameters\.lr\.step: algorithm: grid cannot search"):
        dataclasses.replace(space, algorithm="grid")


def test_lists_become_tuples_and_a_script_replaces_the_module():
    p = Parameter("c", "categorical", values=["a", "b"], condition=None)
    assert p.values == ("a", "b")
    assert Trainer(script="train.py", tuning_args=["--x"]) == Trainer(
        module=None, script="train.py", tuning_args=("--x",)
    )


def test_condition_values_are_checked_against_the_parent():
    parent = Parameter("layers", "integer", min=1, max=8, step=2)  # 1, 3, 5, 7
    ok = Parameter("res", "boolean", condition=Condition("layers", (3, 5)))
    assert SearchSpace("s", (parent, ok)).parameter("res").condition.values == (3, 5)
    off_grid = Parameter("res", "boolean", condition=Condition("layers", (4,)))
    with pytest.raises(SpaceError, match=r"4 is not a value of 'layers'.*\(1, 3, 5, 7\)"):
        SearchSpace("s", (parent, off_grid))
