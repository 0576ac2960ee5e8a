"""Compiling to keras_tuner.HyperParameters (golden file) and loading one back."""

from __future__ import annotations

import json

import keras_tuner as kt
import pytest

from search_spaces.keras_tuner_compiler import from_hyperparameters, to_hyperparameters
from search_spaces.show import show
from trialkit.errors import SpaceError


def test_golden_all_types(all_types, golden):
    golden("all_types.keras_tuner.json", show(all_types, "keras-tuner"))


def test_golden_flights(flights, golden):
    golden("flights.keras_tuner.json", show(flights, "keras-tuner"))


def test_each_type_maps_to_its_keras_tuner_class(all_types):
    hp = to_hyperparameters(all_types)
    classes = {h.name: type(h).__name__ for h in hp.space}
    assert classes == {
        "learning_rate": "Float",
        "dropout": "Float",
        "momentum": "Float",
        "layers": "Int",
        "units": "Int",
        "filters": "Int",
        "width": "Int",
        "batch_size": "Choice",
        "weight_decay": "Choice",
        "optimizer": "Choice",
        "beta_1": "Float",
        "amsgrad": "Boolean",
        "epsilon": "Choice",
        "residual": "Boolean",
        "head": "Choice",
        "seed": "Fixed",
        "activation": "Fixed",
    }
    units = next(h for h in hp.space if h.name == "units")
    assert (units.step, units.sampling, units.default) == (2, "log", 64)
    assert list(units.values) == [16, 32, 64, 128, 256]


def test_conditions_nest_as_scopes(all_types):
    hp = to_hyperparameters(all_types)
    epsilon = next(h for h in hp.space if h.name == "epsilon")
    assert [(c.name, c.values) for c in epsilon.conditions] == [
        ("optimizer", ["adam"]),
        ("amsgrad", [True]),
    ]
    # Defaults: optimizer=sgd, amsgrad=false: beta_1, amsgrad and epsilon are inactive.
    assert not hp.is_active("beta_1") and not hp.is_active("epsilon")
    hp.values["optimizer"] = "adam"
    assert hp.is_active("beta_1") and hp.is_active("amsgrad")
    assert not hp.is_active("epsilon")
    hp.values["amsgrad"] = True
    assert hp.is_active("epsilon")


def test_round_trip(all_types, flights):
    for space in (all_types, flights):
        back = from_hyperparameters(to_hyperparameters(space), name=space.name)
        assert back.parameters == space.parameters
        assert to_hyperparameters(back).get_config() == to_hyperparameters(space).get_config()


def test_from_hyperparameters_reads_a_hand_written_space():
    hp = kt.HyperParameters()
    hp.Choice("model", ["mlp", "cnn"])
    with hp.conditional_scope("model", ["cnn"]):
        hp.Int("filters", 8, 64, step=8)
        with hp.conditional_scope("filters", [8, 16]):
            hp.Boolean("pool")
    hp.Float("lr", 1e-4, 1e-2, sampling="log")
    hp.Choice("batch", [64, 16, 32])
    hp.Fixed("seed", 7)
    space = from_hyperparameters(hp, name="hand")
    assert space.names == ("model", "filters", "pool", "lr", "batch", "seed")
    assert space.parameter("pool").condition.parent == "filters"
    assert space.parameter("pool").condition.values == (8, 16)
    assert space.parameter("batch").values == (16, 32, 64)  # Vertex needs increasing values
    assert space.parameter("lr").scale == "log"
    assert json.loads(show(space, "vertex"))["parameters"][0]["conditionalParameterSpecs"]


def test_from_hyperparameters_refuses_what_vertex_cannot_express():
    same_name = kt.HyperParameters()
    same_name.Choice("model", ["mlp", "cnn"])
    for model in ("mlp", "cnn"):
        with same_name.conditional_scope("model", [model]):
            same_name.Int("units", 8, 64)
    with pytest.raises(SpaceError, match=r"^kt: parameters\.units: declared under several"):
        from_hyperparameters(same_name, name="kt")

    # conditional_scope itself refuses this; a config (e.g. a saved oracle's) can still hold it.
    two_parents = kt.HyperParameters()
    two_parents.Choice("a", ["x", "y"])
    two_parents.Boolean("b")
    two_parents.Int("c", 1, 3)
    config = two_parents.get_config()
    config["space"][2]["config"]["conditions"] = [
        {"class_name": "Parent", "config": {"name": "a", "values": ["x"]}},
        {"class_name": "Parent", "config": {"name": "b", "values": [True]}},
    ]
    two_parents = kt.HyperParameters.from_config(config)
    with pytest.raises(SpaceError, match=r"parameters\.c\.condition: depends on several"):
        from_hyperparameters(two_parents, name="kt")

    invalid = kt.HyperParameters()
    invalid.Float("lr", 0.1, 0.1)
    with pytest.raises(SpaceError, match=r"^kt: parameters\.lr\.max: min equals max"):
        from_hyperparameters(invalid, name="kt")
