"""Compile a SearchSpace to what Vertex AI's HyperparameterTuningJob takes, and to the StudySpec
JSON the SDK sends. The only module that imports aiplatform (lazily).

Mapping, where Vertex has no direct equivalent:
    integer (no step)        INTEGER (a step of 1 on a linear scale counts as no step)
    double (no step)         DOUBLE
    integer/double + step    DISCRETE: the list of values (Parameter.step_values), same scale
    categorical              CATEGORICAL (no scale)
    discrete                 DISCRETE, with its scale
    boolean                  CATEGORICAL ["false", "true"]
    fixed                    CATEGORICAL [the value as the trainer's flag text], so the trainer
                             receives --name=value exactly as written, like any other flag
A conditional parameter is attached to its parent's conditional_parameter_spec; Vertex sends
values back as floats or strings: cast them with Parameter.cast. `default` is Keras Tuner only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces.model import Parameter, SearchSpace
from trialkit.errors import SpaceError

if TYPE_CHECKING:
    from google.cloud.aiplatform.hyperparameter_tuning import _ParameterSpec


def to_parameter_specs(space: SearchSpace) -> dict[str, _ParameterSpec]:
    """The parameter_spec dict for HyperparameterTuningJob: root parameters, each carrying its
    conditional children (recursively) in conditional_parameter_spec."""
    specs: dict[str, _ParameterSpec] = {}
    roots: dict[str, _ParameterSpec] = {}
    for p in space.parameters:
        spec = _spec(p)
        specs[p.name] = spec
        if p.condition is None:
            roots[p.name] = spec
            continue
        parent = space.parameter(p.condition.parent)
        spec.parent_values = [parent_value(parent, v) for v in p.condition.values]
        siblings = specs[parent.name].conditional_parameter_spec
        if siblings is None:
            siblings = specs[parent.name].conditional_parameter_spec = {}
        siblings[p.name] = spec
    return roots


def vertex_type(p: Parameter) -> str:
    """INTEGER, DOUBLE, DISCRETE or CATEGORICAL: the Vertex type `p` compiles to."""
    if p.type in ("integer", "double") and _stepped(p):
        return "DISCRETE"
    return {
        "integer": "INTEGER",
        "double": "DOUBLE",
        "discrete": "DISCRETE",
        "categorical": "CATEGORICAL",
        "boolean": "CATEGORICAL",
        "fixed": "CATEGORICAL",
    }[p.type]


def _stepped(p: Parameter) -> bool:
    return p.step is not None and not (p.type == "integer" and p.scale == "linear" and p.step == 1)


def categories(p: Parameter) -> list[str]:
    """The CATEGORICAL values of a categorical, boolean or fixed parameter."""
    if p.type == "boolean":
        return ["false", "true"]
    if p.type == "fixed":
        return [flag_text(p.value)]
    return list(p.values)


def discrete_values(p: Parameter) -> tuple:
    """The DISCRETE values of a discrete parameter or a stepped range, increasing."""
    return tuple(p.values) if p.type == "discrete" else p.step_values()


def parent_value(parent: Parameter, value: Any) -> Any:
    """A condition's parent value as Vertex types it (CATEGORICAL text, INTEGER, DISCRETE)."""
    kind = vertex_type(parent)
    if kind == "CATEGORICAL":
        return flag_text(value)
    return int(value) if kind == "INTEGER" else float(value)


def flag_text(value: Any) -> str:
    """A value as the trainer sees it on its command line (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _spec(p: Parameter) -> _ParameterSpec:
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    kind = vertex_type(p)
    if kind == "INTEGER":
        return hpt.IntegerParameterSpec(min=p.min, max=p.max, scale=p.scale)
    if kind == "DOUBLE":
        return hpt.DoubleParameterSpec(min=float(p.min), max=float(p.max), scale=p.scale)
    if kind == "DISCRETE":
        values = [float(v) for v in discrete_values(p)]
        return hpt.DiscreteParameterSpec(values=values, scale=p.scale)
    return hpt.CategoricalParameterSpec(values=categories(p))


def metric_spec(space: SearchSpace) -> dict[str, str]:
    """{metric tag: "minimize" | "maximize"}, as HyperparameterTuningJob(metric_spec=...) takes."""
    return {space.metric.tag: space.metric.goal}


def search_algorithm(space: SearchSpace) -> str | None:
    """The SDK's search_algorithm: None (Vertex's default, Bayesian), "grid" or "random".
    vizier is Vertex's default too: Vertex's Bayesian search is Vizier's GP-UCB-PE."""
    if space.algorithm == "hyperband":
        raise SpaceError(
            f"{space.source}: algorithm: hyperband is not a Vertex search algorithm; "
            "use --algorithm bayesian, random or grid with --backend vertex, "
            "or run hyperband with --backend local"
        )
    return {"bayesian": None, "vizier": None, "grid": "grid", "random": "random"}[space.algorithm]


def measurement_selection(space: SearchSpace) -> str:
    """The SDK's measurement_selection: "best" or "last"."""
    return space.measurement_selection


def study_spec(space: SearchSpace) -> Any:
    """The aiplatform_v1 StudySpec proto-plus message, built exactly as HyperparameterTuningJob
    builds it from our arguments, then with early stopping applied."""
    from google.cloud.aiplatform import hyperparameter_tuning as hpt
    from google.cloud.aiplatform.compat.types import study as gca_study

    spec = gca_study.StudySpec(
        metrics=[
            gca_study.StudySpec.MetricSpec(metric_id=tag, goal=goal.upper())
            for tag, goal in metric_spec(space).items()
        ],
        parameters=[
            parameter._to_parameter_spec(parameter_id=parameter_id)
            for parameter_id, parameter in to_parameter_specs(space).items()
        ],
        algorithm=hpt.SEARCH_ALGORITHM_TO_PROTO_VALUE[search_algorithm(space)],
        measurement_selection_type=hpt.MEASUREMENT_SELECTION_TO_PROTO_VALUE[
            measurement_selection(space)
        ],
    )
    apply_early_stopping(spec, space)
    return spec


def study_spec_json(space: SearchSpace, numeric_enums: bool = False) -> dict[str, Any]:
    """The StudySpec as REST JSON (camelCase, int64 as strings, zero values omitted).
    numeric_enums=True writes enums as ints, byte for byte what the SDK's REST transport sends;
    the default writes their names, which the API accepts as well and people can read."""
    from google.protobuf import json_format

    return json_format.MessageToDict(study_spec(space)._pb, use_integers_for_enums=numeric_enums)


def apply_early_stopping(study_spec_proto: Any, space: SearchSpace) -> None:
    """Set the automated stopping spec of `space` on an aiplatform_v1 StudySpec (proto-plus or
    raw protobuf), e.g. job._gca_resource.study_spec before run(): the SDK's constructor has no
    argument for it. Policy none leaves the proto untouched."""
    stopping = space.early_stopping
    if stopping.policy == "none":
        return
    pb = getattr(study_spec_proto, "_pb", study_spec_proto)
    if stopping.policy == "median":
        target = pb.median_automated_stopping_spec
    elif stopping.policy == "decay_curve":
        target = pb.decay_curve_stopping_spec
    else:  # the model rejects other policies on construction
        raise AssertionError(stopping.policy)
    target.SetInParent()  # present even when every field is zero: the policy itself is the signal
    target.use_elapsed_duration = stopping.use_elapsed_duration
