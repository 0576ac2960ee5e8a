"""Both compilers describe the same space: names, types, ranges, scales and value sets."""

from __future__ import annotations

import pytest

from search_spaces.keras_tuner_compiler import to_hyperparameters
from search_spaces.vertex_compiler import study_spec_json

KT_KIND = {"Int": "integer", "Float": "double"}
VERTEX_KIND = {"integerValueSpec": "integer", "doubleValueSpec": "double"}
VERTEX_SCALE = {
    "UNIT_LINEAR_SCALE": "linear",
    "UNIT_LOG_SCALE": "log",
    "UNIT_REVERSE_LOG_SCALE": "reverse_log",
}


def _vertex_specs(specs: list[dict]) -> dict[str, dict]:
    """Every parameter spec by id, conditional children included."""
    found = {}
    for spec in specs:
        found[spec["parameterId"]] = spec
        children = [c["parameterSpec"] for c in spec.get("conditionalParameterSpecs", [])]
        found.update(_vertex_specs(children))
    return found


def _kt_view(h) -> tuple:
    name = type(h).__name__
    if name not in KT_KIND:
        return ("finite", _as_set(h.values))
    # Keras Tuner stores a linear Int's implicit step as 1: still a plain integer range.
    stepped = h.step is not None and not (name == "Int" and h.sampling == "linear" and h.step == 1)
    if not stepped:
        return (KT_KIND[name], float(h.min_value), float(h.max_value), h.sampling)
    return ("finite", _as_set(h.values))


def _vertex_view(spec: dict) -> tuple:
    for key, kind in VERTEX_KIND.items():
        if key in spec:
            value = spec[key]
            scale = VERTEX_SCALE[spec["scaleType"]]
            return (kind, float(value["minValue"]), float(value["maxValue"]), scale)
    values = (spec.get("discreteValueSpec") or spec["categoricalValueSpec"])["values"]
    return ("finite", _as_set(values))


def _as_set(values) -> frozenset:
    """Values as the trainer receives them: booleans as true/false, numbers (also a fixed
    number sent as a CATEGORICAL string) compared as floats."""
    out = set()
    for v in values:
        if isinstance(v, bool):
            out.add("true" if v else "false")
            continue
        try:
            out.add(round(float(v), 12))
        except ValueError:
            out.add(v)
    return frozenset(out)


@pytest.mark.parametrize("space_name", ["flights", "all_types"])
def test_same_space_in_both_compilers(space_name, request):
    space = request.getfixturevalue(space_name)
    kt_view = {h.name: _kt_view(h) for h in to_hyperparameters(space).space}
    vertex = _vertex_specs(study_spec_json(space)["parameters"])
    vertex_view = {name: _vertex_view(spec) for name, spec in vertex.items()}
    assert list(kt_view) == list(space.names)
    assert kt_view == vertex_view


def test_flights_ranges(flights):
    vertex = _vertex_specs(study_spec_json(flights)["parameters"])
    assert _vertex_view(vertex["train_batch_size"]) == ("integer", 16.0, 256.0, "log")
    assert _vertex_view(vertex["nbuckets"]) == ("integer", 5.0, 10.0, "linear")
    assert _vertex_view(vertex["learning_rate"]) == ("double", 1e-4, 1e-2, "log")
    assert _vertex_view(vertex["nembeds"]) == ("integer", 3.0, 10.0, "linear")
    assert _vertex_view(vertex["dnn_hidden_units"]) == (
        "finite",
        frozenset({"64,16", "64,16,4", "64,64,64,8", "256,64,16"}),
    )
