"""A StudySpec's parameters as a small tree of Params, checked the way Vertex checks them.

Conversion from the proto lives here, once: the suggestion algorithms and the trial runner see
only Params and plain values (int for INTEGER, float for DOUBLE/DISCRETE, str for CATEGORICAL).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from vertex_emulator.errors import invalid

DOUBLE, INTEGER, CATEGORICAL, DISCRETE = "DOUBLE", "INTEGER", "CATEGORICAL", "DISCRETE"
LINEAR, LOG, REVERSE_LOG = 1, 2, 3  # StudySpec.ParameterSpec.ScaleType (0 = unspecified)
MAX_DISCRETE_VALUES = 1000

Value = int | float | str


@dataclass(frozen=True)
class Param:
    """One parameter; `children` are (parent values that enable it, child Param)."""

    id: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple = ()  # DISCRETE floats or CATEGORICAL strings
    scale: int = 0
    children: tuple[tuple[tuple, Param], ...] = ()

    def active_children(self, value: Value) -> Iterator[Param]:
        for parent_values, child in self.children:
            if any(_same(value, v) for v in parent_values):
                yield child

    def grid_values(self) -> list[Value]:
        if self.kind == INTEGER:
            return list(range(int(self.low), int(self.high) + 1))
        return list(self.values)


def _same(a: Value, b: Value) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def params_from_study(study) -> list[Param]:
    """The top-level Params of a StudySpec proto; raises ApiError(400) where Vertex would refuse."""
    if not study.parameters:
        raise invalid("study_spec.parameters must not be empty.")
    params = [_param(spec) for spec in study.parameters]
    ids = [p.id for p in walk(params)]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise invalid(f"Duplicate parameter ids in study_spec: {duplicates}.")
    return params


def walk(params: list[Param]) -> Iterator[Param]:
    """Every Param of the tree, parents before their children."""
    for param in params:
        yield param
        yield from walk([child for _, child in param.children])


def _param(spec) -> Param:
    pid = spec.parameter_id
    if not pid:
        raise invalid("parameter_id must be set on every parameter spec.")
    which = spec.WhichOneof("parameter_value_spec")
    if which == "double_value_spec":
        v = spec.double_value_spec
        param = Param(pid, DOUBLE, v.min_value, v.max_value, scale=spec.scale_type)
    elif which == "integer_value_spec":
        v = spec.integer_value_spec
        param = Param(pid, INTEGER, v.min_value, v.max_value, scale=spec.scale_type)
    elif which == "categorical_value_spec":
        param = Param(pid, CATEGORICAL, values=tuple(spec.categorical_value_spec.values))
    elif which == "discrete_value_spec":
        v = spec.discrete_value_spec
        param = Param(pid, DISCRETE, values=tuple(v.values), scale=spec.scale_type)
    else:
        raise invalid(f"Parameter {pid!r} has no value spec.")
    _check(param, spec.scale_type)
    children = tuple(_condition(param, c) for c in spec.conditional_parameter_specs)
    return Param(param.id, param.kind, param.low, param.high, param.values, param.scale, children)


def _check(param: Param, scale: int) -> None:
    pid = param.id
    if param.kind in (DOUBLE, INTEGER) and param.low > param.high:
        raise invalid(f"Parameter {pid!r}: min_value must be <= max_value.")
    if param.kind == CATEGORICAL:
        if scale:
            raise invalid(f"Parameter {pid!r}: a CATEGORICAL parameter takes no scale_type.")
        if not param.values or len(set(param.values)) != len(param.values):
            raise invalid(f"Parameter {pid!r}: categorical values must be non-empty and unique.")
    if param.kind == DISCRETE:
        values = param.values
        if not values or len(values) > MAX_DISCRETE_VALUES:
            raise invalid(f"Parameter {pid!r}: 1 to {MAX_DISCRETE_VALUES} discrete values needed.")
        if any(b - a < 1e-10 for a, b in zip(values, values[1:], strict=False)):
            raise invalid(f"Parameter {pid!r}: discrete values must increase, 1e-10 apart.")
    if scale in (LOG, REVERSE_LOG):
        low = min(param.values) if param.kind == DISCRETE else param.low
        if low <= 0:
            raise invalid(f"Parameter {pid!r}: a log scale needs a strictly positive range.")


def _condition(parent: Param, cond) -> tuple[tuple, Param]:
    which = cond.WhichOneof("parent_value_condition")
    expected = {
        "parent_discrete_values": DISCRETE,
        "parent_int_values": INTEGER,
        "parent_categorical_values": CATEGORICAL,
    }
    if parent.kind not in expected.values():
        raise invalid(f"Parameter {parent.id!r}: a DOUBLE parameter cannot have conditional specs.")
    if which is None or expected[which] != parent.kind:
        raise invalid(f"Parameter {parent.id!r}: conditions must use parent {parent.kind} values.")
    values = tuple(getattr(cond, which).values)
    if not values:
        raise invalid(f"Parameter {parent.id!r}: a condition needs at least one parent value.")
    if parent.kind == INTEGER:
        values = tuple(int(v) for v in values)
    return values, _param(cond.parameter_spec)


def active_assignment(params: list[Param], pick) -> dict[str, Value]:
    """Walk the tree choosing each active parameter's value with `pick(param)` (None: leave out)."""
    chosen: dict[str, Value] = {}

    def visit(param: Param) -> None:
        value = pick(param)
        if value is None:
            return
        chosen[param.id] = value
        for child in param.active_children(value):
            visit(child)

    for param in params:
        visit(param)
    return chosen


def cast(param: Param, value) -> Value:
    if param.kind == INTEGER:
        return int(round(float(value)))
    if param.kind in (DOUBLE, DISCRETE):
        return float(value)
    return str(value)


def as_flag(param_id: str, value: Value) -> str:
    """How Vertex hands a value to the trial: --name=value, floats as float text."""
    text = repr(float(value)) if isinstance(value, float) else str(value)
    return f"--{param_id}={text}"


def ordered(params: list[Param], values: Mapping[str, Value]) -> list[tuple[Param, Value]]:
    """The assigned (Param, value) pairs in tree order, parents first."""
    return [(p, values[p.id]) for p in walk(params) if p.id in values]


def outside(params: list[Param], values: Mapping[str, Value]) -> str:
    """Why `values` lie outside the parameter specs ('' when they do not): Vertex never starts a
    trial with a value its StudySpec excludes, so neither does the emulator, whatever its
    suggestion algorithm proposes. Active parameters must be present, inactive ones absent."""
    problems: list[str] = []
    judged: set[str] = set()  # active ones, and children of a parent whose value is wrong

    def visit(param: Param) -> None:
        judged.add(param.id)
        if param.id not in values:
            problems.append(f"{param.id!r} is missing")
            return
        problem = _value_problem(param, values[param.id])
        if problem:
            problems.append(f"{param.id!r} {problem}")
            judged.update(p.id for p in walk([c for _, c in param.children]))
            return
        for child in param.active_children(values[param.id]):
            visit(child)

    for param in params:
        visit(param)
    known = {p.id for p in walk(params)}
    for pid in values:
        if pid not in judged:
            why = "is not active under its parent's value" if pid in known else "is not in the spec"
            problems.append(f"{pid!r} {why}")
    return "; ".join(problems)


def _value_problem(param: Param, value) -> str:
    if param.kind == CATEGORICAL:
        return (
            "" if isinstance(value, str) and value in param.values else f"{value!r} is not listed"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{value!r} is not a number"
    if param.kind == DISCRETE:
        return "" if any(_same(value, v) for v in param.values) else f"{value!r} is not listed"
    if param.kind == INTEGER and float(value) != int(value):
        return f"{value!r} is not an integer"
    if not param.low <= value <= param.high:
        return f"{value!r} is outside [{_text(param.low)}, {_text(param.high)}]"
    return ""


def _text(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)
