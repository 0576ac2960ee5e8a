"""Compile a SearchSpace to keras_tuner.HyperParameters, and load one back into the data model.

The only module that imports keras_tuner (lazily, so importing this module stays cheap).
Mapping: integer -> Int, double -> Float (step and sampling passed through: Keras Tuner's step
is additive on a linear scale and a multiplier on log scales, as in the data model),
categorical -> Choice of strings, discrete -> Choice of numbers, boolean -> Boolean,
fixed -> Fixed; a condition chain -> nested conditional_scope blocks, root parent outermost.

`hyperparameters_config` writes what HyperParameters.get_config() returns for the same space
without importing keras_tuner (which imports TensorFlow: seconds), for `dualtune space show`;
a test holds the two equal.

Known difference: Keras Tuner 1.4.8 counts a stepped Float's values with float floor division,
so Float(0, 1, step=0.1) stops at 0.9 where Parameter.step_values (and so Vertex) reaches 1.0;
steps that are exact binary fractions (0.5, 0.25, 0.125) agree.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from search_spaces.model import Condition, Parameter, SearchSpace
from trialkit.errors import SpaceError

if TYPE_CHECKING:
    import keras_tuner


def to_hyperparameters(space: SearchSpace) -> keras_tuner.HyperParameters:
    """A HyperParameters object declaring every parameter of `space`, conditions included."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for p in space.parameters:
        with contextlib.ExitStack() as scopes:
            for condition in _condition_chain(space, p):
                scopes.enter_context(hp.conditional_scope(condition.parent, list(condition.values)))
            _declare(hp, p)
    return hp


def hyperparameters_config(space: SearchSpace) -> dict[str, Any]:
    """`to_hyperparameters(space).get_config()`, computed from the data model alone: every
    hyperparameter's class and config, in declaration order, and the default values of those
    active under the defaults, as Keras Tuner 1.4 registers them."""
    entries, values = [], {}
    for p in space.parameters:
        conditions = [_parent(c) for c in _condition_chain(space, p)]
        class_name, config = _hp_config(p)
        config = _with_conditions(config, conditions)
        entries.append({"class_name": class_name, "config": config})
        if _active(conditions, values) and p.name not in values:
            values[p.name] = _hp_default(class_name, config)
    return {"space": entries, "values": values}


def _active(conditions: list[dict[str, Any]], values: dict[str, Any]) -> bool:
    """Parent.is_active for each condition: the parent is active and its value among these."""
    return all(
        c["config"]["name"] in values and values[c["config"]["name"]] in c["config"]["values"]
        for c in conditions
    )


def _parent(condition: Condition) -> dict[str, Any]:
    """keras_tuner's Parent condition, its values standardised as Parent.__init__ does."""
    values = list(condition.values)
    if isinstance(values[0], str):
        values = [str(v) for v in values]
    elif isinstance(values[0], int) and not isinstance(values[0], bool):
        values = [int(v) for v in values]
    return {"class_name": "Parent", "config": {"name": condition.parent, "values": values}}


def _with_conditions(config: dict[str, Any], conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """Keras Tuner's key order: name, default, conditions, then the type's own keys."""
    ordered = {"name": config.pop("name")}
    if "default" in config:
        ordered["default"] = config.pop("default")
    return {**ordered, "conditions": conditions, **config}


def _hp_config(p: Parameter) -> tuple[str, dict[str, Any]]:
    """The (class name, config) `_declare` registers for `p` (conditions aside)."""
    if p.type in ("integer", "double"):
        return _numerical_config(p)
    if p.type in ("categorical", "discrete"):
        if p.type == "categorical":
            values, default = [str(v) for v in p.values], p.default
            default = None if default is None else str(default)
        else:
            kind = p.python_type()  # as _declare: one type for all values
            values = [kind(v) for v in p.values]
            default = None if p.default is None else kind(p.default)
        numeric = not isinstance(values[0], str)
        default = values[0] if default is None else default
        return "Choice", {"name": p.name, "default": default, "values": values, "ordered": numeric}
    if p.type == "boolean":
        return "Boolean", {"name": p.name, "default": bool(p.default)}
    if p.type == "fixed":
        return "Fixed", {"name": p.name, "value": p.value}
    raise AssertionError(p.type)  # the model rejects unknown types on construction


def _numerical_config(p: Parameter) -> tuple[str, dict[str, Any]]:
    if p.type == "integer":
        step = int(p.step) if p.step is not None else (1 if p.scale == "linear" else None)
        bounds = {"min_value": int(p.min), "max_value": int(p.max)}
        default = p.default  # Int's config keeps the default as given, None included
        class_name = "Int"
    else:
        step = p.step  # Float keeps the step as given
        bounds = {"min_value": float(p.min), "max_value": float(p.max)}
        default = p.default if p.default is not None else float(p.min)
        class_name = "Float"
    return class_name, {
        "name": p.name,
        "default": default,
        **bounds,
        "step": step,
        "sampling": p.scale,
    }


def _hp_default(class_name: str, config: dict[str, Any]) -> Any:
    """HyperParameter.default: what Keras Tuner puts in `values` for an active parameter."""
    if class_name == "Fixed":
        return config["value"]
    if class_name == "Int" and config["default"] is None:
        return config["min_value"]
    return config["default"]


def _condition_chain(space: SearchSpace, p: Parameter) -> list[Condition]:
    """The conditions from the root ancestor down to `p`'s own: Keras Tuner only finds a parent
    from inside the same scopes the parent was declared in."""
    chain = []
    while p.condition is not None:
        chain.append(p.condition)
        p = space.parameter(p.condition.parent)
    return chain[::-1]


def _declare(hp: keras_tuner.HyperParameters, p: Parameter) -> None:
    if p.type == "integer":
        hp.Int(p.name, p.min, p.max, step=p.step, sampling=p.scale, default=p.default)
    elif p.type == "double":
        hp.Float(p.name, p.min, p.max, step=p.step, sampling=p.scale, default=p.default)
    elif p.type == "categorical":
        hp.Choice(p.name, list(p.values), default=p.default)
    elif p.type == "discrete":
        kind = p.python_type()  # Choice refuses mixed int/float lists
        default = None if p.default is None else kind(p.default)
        hp.Choice(p.name, [kind(v) for v in p.values], default=default)
    elif p.type == "boolean":
        hp.Boolean(p.name, default=bool(p.default))
    elif p.type == "fixed":
        hp.Fixed(p.name, p.value)
    else:  # the model rejects unknown types on construction
        raise AssertionError(p.type)


def from_hyperparameters(
    hp: keras_tuner.HyperParameters, name: str = "keras_tuner", **space_fields: Any
) -> SearchSpace:
    """The data model of a HyperParameters object's space (metric, trainer... from
    `space_fields`). Refuses what Vertex cannot express: one name declared under several
    conditions, or a parameter conditioned on several independent parents."""
    try:
        return SearchSpace(
            name=name,
            parameters=_parameters(hp.space),
            source=space_fields.pop("source", name),
            **space_fields,
        )
    except SpaceError as e:
        raise SpaceError(f"{name}: {e}") from None


def _parameters(space: list[Any]) -> tuple[Parameter, ...]:
    by_name: dict[str, Any] = {}
    parameters = []
    for h in space:
        if h.name in by_name:
            raise SpaceError(
                f"parameters.{h.name}: declared under several conditions (Keras Tuner allows it, "
                "Vertex does not); give each declaration its own name"
            )
        by_name[h.name] = h
        parameters.append(_parameter(h, _condition(h, by_name)))
    return tuple(parameters)


def _parameter(h: Any, condition: Condition | None) -> Parameter:
    kind = type(h).__name__
    common: dict[str, Any] = {"name": h.name, "condition": condition}
    if kind in ("Int", "Float"):
        step = h.step
        if kind == "Int" and h.sampling == "linear" and step == 1:
            step = None  # Keras Tuner's own default for a linear Int
        return Parameter(
            type="integer" if kind == "Int" else "double",
            min=h.min_value,
            max=h.max_value,
            scale=h.sampling,
            step=step,
            default=_explicit_default(h, h.min_value),
            **common,
        )
    if kind == "Choice":
        return _choice(h, common)
    if kind == "Boolean":
        return Parameter(type="boolean", default=_explicit_default(h, False), **common)
    if kind == "Fixed":
        return Parameter(type="fixed", value=h.value, **common)
    raise SpaceError(
        f"parameters.{h.name}: Keras Tuner {kind} has no dualtune equivalent; "
        "use Int, Float, Choice, Boolean or Fixed"
    )


def _explicit_default(h: Any, implicit: Any) -> Any:
    """The default unless it is Keras Tuner's own (min, the first choice, False): registering a
    hyperparameter stores that implicit default, so it reads back as unset."""
    default = h.default
    return None if default == implicit and type(default) is type(implicit) else default


def _choice(h: Any, common: dict[str, Any]) -> Parameter:
    values = list(h.values)
    default = _explicit_default(h, values[0])
    if isinstance(values[0], bool):
        if sorted(values) != [False, True]:
            raise SpaceError(
                f"parameters.{h.name}: a Choice of {values} has no dualtune equivalent; "
                "use Boolean or Fixed"
            )
        return Parameter(type="boolean", default=_explicit_default(h, False), **common)
    if isinstance(values[0], str):
        return Parameter(type="categorical", values=tuple(values), default=default, **common)
    # Vertex DISCRETE values must increase; the set of choices is what matters.
    return Parameter(type="discrete", values=tuple(sorted(values)), default=default, **common)


def _condition(h: Any, by_name: dict[str, Any]) -> Condition | None:
    if not h.conditions:
        return None
    *outer, inner = h.conditions
    parent = by_name.get(inner.name)
    # Nested scopes are a chain only when the outer conditions are the parent's own.
    if parent is None or list(parent.conditions) != outer:
        names = ", ".join(c.name for c in h.conditions)
        raise SpaceError(
            f"parameters.{h.name}.condition: depends on several independent parents ({names}); "
            "Vertex takes one parent a parameter: declare each parent inside its own parent's scope"
        )
    return Condition(parent=inner.name, values=tuple(inner.values))
