"""The StudySpec REST JSON of a search space from the data model alone, for `dualtune space show`.

vertex_compiler.study_spec_json builds the same JSON through the aiplatform SDK's own classes
and protobuf's MessageToDict; importing the SDK costs seconds, more than the whole command
should. This module writes what MessageToDict writes (camelCase keys in field-number order, int64
as strings, enums by name, proto3 zero values left out) with the stdlib only; a test holds the two
equal on every space the tests know.
"""

from __future__ import annotations

from typing import Any

from search_spaces.model import Parameter, SearchSpace
from search_spaces.vertex_compiler import (
    categories,
    discrete_values,
    measurement_selection,
    parent_value,
    search_algorithm,
    vertex_type,
)

_SCALE = {
    "linear": "UNIT_LINEAR_SCALE",
    "log": "UNIT_LOG_SCALE",
    "reverse_log": "UNIT_REVERSE_LOG_SCALE",
}
_ALGORITHM = {None: None, "grid": "GRID_SEARCH", "random": "RANDOM_SEARCH"}
_MEASUREMENT = {"best": "BEST_MEASUREMENT", "last": "LAST_MEASUREMENT"}
_PARENT_KEY = {
    "DISCRETE": "parentDiscreteValues",
    "INTEGER": "parentIntValues",
    "CATEGORICAL": "parentCategoricalValues",
}


def study_spec_dict(space: SearchSpace) -> dict[str, Any]:
    """What study_spec_json(space) returns (enum names), computed without the SDK."""
    spec: dict[str, Any] = {
        "metrics": [{"metricId": space.metric.tag, "goal": space.metric.goal.upper()}],
        "parameters": [_parameter(space, p) for p in space.parameters if p.condition is None],
    }
    algorithm = _ALGORITHM[search_algorithm(space)]
    if algorithm:
        spec["algorithm"] = algorithm
    stopping = space.early_stopping
    if stopping.policy != "none":  # decay_curve (field 4) and median (5) share a oneof
        key = {"median": "medianAutomatedStoppingSpec", "decay_curve": "decayCurveStoppingSpec"}
        spec[key[stopping.policy]] = (
            {"useElapsedDuration": True} if stopping.use_elapsed_duration else {}
        )
    spec["measurementSelectionType"] = _MEASUREMENT[measurement_selection(space)]
    return spec


def _parameter(space: SearchSpace, p: Parameter) -> dict[str, Any]:
    kind = vertex_type(p)
    out: dict[str, Any] = {"parameterId": p.name}
    if kind == "DOUBLE":
        out["doubleValueSpec"] = _nonzero(minValue=float(p.min), maxValue=float(p.max))
    elif kind == "INTEGER":
        out["integerValueSpec"] = {
            k: str(v) for k, v in _nonzero(minValue=int(p.min), maxValue=int(p.max)).items()
        }
    elif kind == "CATEGORICAL":
        out["categoricalValueSpec"] = {"values": categories(p)}
    else:
        out["discreteValueSpec"] = {"values": [float(v) for v in discrete_values(p)]}
    if kind != "CATEGORICAL":  # the SDK's categorical spec has no scale: SCALE_TYPE_UNSPECIFIED
        out["scaleType"] = _SCALE[p.scale]
    children = [c for c in space.parameters if c.condition and c.condition.parent == p.name]
    if children:
        out["conditionalParameterSpecs"] = [
            {
                "parameterSpec": _parameter(space, child),
                _PARENT_KEY[kind]: {
                    "values": [_json_parent_value(p, v) for v in child.condition.values]
                },
            }
            for child in children
        ]
    return out


def _json_parent_value(parent: Parameter, value: Any) -> Any:
    """vertex_compiler.parent_value, as the JSON writes it (proto3 int64 as a string)."""
    typed = parent_value(parent, value)
    return str(typed) if vertex_type(parent) == "INTEGER" else typed


def _nonzero(**fields: float) -> dict[str, float]:
    """proto3 leaves a scalar at zero out of the JSON."""
    return {k: v for k, v in fields.items() if v != 0}
