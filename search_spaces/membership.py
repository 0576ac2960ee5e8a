"""Whether a parameter set lies inside a search space, and mapping back what safely can be.

Both backends check every suggested parameter set before a trial starts, so a trial never runs
with a value its space excludes, on either backend. Pure: no keras_tuner, no aiplatform.

A value is inside the space when it has the parameter's kind (an int for an integer, a number
for a double or discrete, a str for a categorical, a bool for a boolean), lies within
[min, max], lies on the step grid (within 1e-9 relative, as Parameter.allows: Keras Tuner's
0.1 * 3 is 0.30000000000000004) and is one of the listed values; a conditional parameter is
present exactly when its parent is present with one of the condition's values.

What maps back safely (Violation.fix), and why only this:
- an integer one past min or max: Keras Tuner 1.4.8's Int.prob_to_value(1.0) is max + 1 on a
  log or reverse_log scale without step (it samples [min, max + 1) and int() truncates; the
  Bayesian oracle's optimiser reaches the bound of [0, 1]); truncation can give min - 1 too;
- a whole float for an integer (9.0 -> 9);
- a double outside [min, max] by rounding error only (1e-9 of the bound's magnitude; a log
  scale's float arithmetic misses its bound by a few ulps);
- a parameter given while its condition is inactive: it is left out.
Anything else (a missing value, a wrong kind, further out of range, off the grid, not a listed
value) is not mapped: guessing would run a trial the search algorithm did not ask for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from search_spaces.model import Parameter, SearchSpace, did_you_mean, is_number
from trialkit.errors import DualtuneError

REL_TOL = 1e-9  # rounding error, relative to the magnitude of the values compared


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


DROP = _Marker("DROP")  # Violation.fix: leave the parameter out
NO_FIX = _Marker("NO_FIX")  # Violation.fix: cannot be mapped into the space
MISSING = _Marker("MISSING")  # Violation.value: the parameter was not given


@dataclass(frozen=True)
class Violation:
    """One parameter's value outside the space: what is wrong and, if safe, what it maps to."""

    parameter: str
    problem: str  # names the value, e.g. "257 is above max 256"
    value: Any = MISSING
    fix: Any = NO_FIX  # the in-space value, DROP (leave it out) or NO_FIX

    @property
    def mappable(self) -> bool:
        return self.fix is not NO_FIX

    def __str__(self) -> str:
        return f"{self.parameter}: {self.problem}"


class OutOfSpace(DualtuneError):
    """A parameter set that lies outside its search space; `violations` says where."""

    def __init__(self, space: SearchSpace, violations: tuple[Violation, ...]) -> None:
        self.violations = violations
        details = "; ".join(str(v) for v in violations)
        super().__init__(f"outside the search space of {space.name!r}: {details}")


def violations(space: SearchSpace, values: dict[str, Any]) -> tuple[Violation, ...]:
    """Every way `values` (parameter name -> value, tuner-internal keys removed) leaves `space`.

    Conditions are judged on the mapped values of their parents, so applying every fix gives a
    parameter set with no violation; a child of an unmappable parent is judged on its value only.
    """
    found: list[Violation] = []
    effective: dict[str, Any] = {}  # the values after their fixes: what conditions see
    unsure: set[str] = set()  # unmappable parameters, and children of them
    for p in space.parameters:
        active = _activity(p, effective, unsure)
        if active is None:
            unsure.add(p.name)
        given = p.name in values
        if active is False and given:
            why = _inactive_reason(p, effective)
            found.append(
                Violation(p.name, f"given ({values[p.name]!r}) but {why}", values[p.name], DROP)
            )
            continue
        if not given:
            if active:
                found.append(Violation(p.name, f"missing, but {_active_reason(p, effective)}"))
            continue
        problem, fix = judge(p, values[p.name])
        if problem:
            found.append(Violation(p.name, problem, values[p.name], fix))
        if fix is NO_FIX:
            unsure.add(p.name)
        elif p.name not in unsure:
            effective[p.name] = fix  # the value itself when it has no problem
    for name in values:
        if name not in space.names:
            hint = did_you_mean(name, space.names)
            found.append(Violation(name, f"not a parameter of the space{hint}", values[name]))
    return tuple(found)


def check(space: SearchSpace, values: dict[str, Any]) -> None:
    """Raise OutOfSpace unless every value of `values` is inside `space`, as given."""
    found = violations(space, values)
    if found:
        raise OutOfSpace(space, found)


def into_space(
    space: SearchSpace, values: dict[str, Any]
) -> tuple[dict[str, Any], tuple[Violation, ...]]:
    """`values` with every safely mappable violation mapped back into `space`, and what was
    mapped (empty when `values` was inside already). Raises OutOfSpace, naming only the
    unmappable values, when any value cannot be mapped."""
    found = violations(space, values)
    unmappable = tuple(v for v in found if not v.mappable)
    if unmappable:
        raise OutOfSpace(space, unmappable)
    mapped = dict(values)
    for v in found:
        if v.fix is DROP:
            del mapped[v.parameter]
        else:
            mapped[v.parameter] = v.fix
    check(space, mapped)  # the fixes are built to land inside; a failure here is a bug
    return mapped, found


# -- one value --------------------------------------------------------------------------------


def judge(p: Parameter, value: Any) -> tuple[str, Any]:
    """('', value) when `value` is one `p` can take, else (the problem, the fix or NO_FIX)."""
    if p.type == "integer":
        return _integer(p, value)
    if p.type == "double":
        return _double(p, value)
    if p.type == "discrete":
        return _listed_number(p, value)
    if p.type == "categorical":
        if isinstance(value, str) and value in p.values:
            return "", value
        choices = ", ".join(p.values)
        hint = did_you_mean(value, p.values) if isinstance(value, str) else ""
        return f"{value!r} is not one of {choices}{hint}", NO_FIX
    if p.type == "boolean":
        if isinstance(value, bool):
            return "", value
        return f"{value!r} is not true or false", NO_FIX
    return _fixed(p, value)


def _integer(p: Parameter, value: Any) -> tuple[str, Any]:
    if not is_number(value):
        return f"{value!r} is not an integer", NO_FIX
    number, problem = value, ""
    if not isinstance(value, int):
        whole = round(value)
        if not math.isclose(value, whole, rel_tol=REL_TOL, abs_tol=REL_TOL):
            return f"{value!r} is not a whole number", NO_FIX
        number, problem = int(whole), f"{value!r} is a float, not an integer"
    if number > p.max:
        if number != p.max + 1:
            return f"{value!r} is above max {p.max}", NO_FIX
        number, problem = p.max, f"{value!r} is one past max {p.max}"
    elif number < p.min:
        if number != p.min - 1:
            return f"{value!r} is below min {p.min}", NO_FIX
        number, problem = p.min, f"{value!r} is one below min {p.min}"
    if p.step is not None and number not in p.step_values():
        return f"{value!r} is not on the step grid ({_grid_text(p)})", NO_FIX
    return problem, number if problem else value


def _double(p: Parameter, value: Any) -> tuple[str, Any]:
    if not is_number(value):
        return f"{value!r} is not a number", NO_FIX
    number, problem = value, ""
    if value > p.max or value < p.min:
        bound, word = (p.max, "above max") if value > p.max else (p.min, "below min")
        if not _close(p, value, bound):
            return f"{value!r} is {word} {bound}", NO_FIX
        number, problem = float(bound), f"{value!r} is {word} {bound} by rounding error"
    if p.step is not None and not any(_close(p, number, g) for g in p.step_values()):
        return f"{value!r} is not on the step grid ({_grid_text(p)})", NO_FIX
    return problem, number if problem else value


def _listed_number(p: Parameter, value: Any) -> tuple[str, Any]:
    if is_number(value) and any(
        math.isclose(value, v, rel_tol=REL_TOL, abs_tol=1e-12) for v in p.values
    ):
        return "", value
    return f"{value!r} is not one of {', '.join(str(v) for v in p.values)}", NO_FIX


def _fixed(p: Parameter, value: Any) -> tuple[str, Any]:
    if type(value) is type(p.value) and value == p.value:
        return "", value
    if is_number(value) and is_number(p.value) and value == p.value:
        return f"{value!r} is a {type(value).__name__}, the fixed value {p.value!r} is not", p.value
    return f"{value!r} is not the fixed value {p.value!r}", NO_FIX


def _close(p: Parameter, value: float, target: float) -> bool:
    """Equal but for rounding error. On a log scale a value's error is relative to itself; on a
    linear or reverse_log scale (max + min - ...) to the larger bound."""
    if p.scale == "log":
        scale = abs(target)
    else:
        scale = max(abs(p.min), abs(p.max))
    return abs(value - target) <= REL_TOL * scale


def _grid_text(p: Parameter) -> str:
    grid = p.step_values()
    head = ", ".join(str(v) for v in grid[:6])
    return head + (f", ..., {grid[-1]}" if len(grid) > 6 else "")


# -- conditions -------------------------------------------------------------------------------


def _activity(p: Parameter, effective: dict[str, Any], unsure: set[str]) -> bool | None:
    """Whether `p` is active given its parents' (mapped) values; None when that is unknown."""
    cond = p.condition
    if cond is None:
        return True
    if cond.parent in unsure:
        return None
    if cond.parent not in effective:  # the parent is inactive itself
        return False
    return _matches(effective[cond.parent], cond.values)


def _matches(value: Any, options: tuple[Any, ...]) -> bool:
    for option in options:
        if isinstance(value, (bool, str)) or isinstance(option, (bool, str)):
            if type(value) is type(option) and value == option:
                return True
        elif math.isclose(value, option, rel_tol=REL_TOL):
            return True
    return False


def _inactive_reason(p: Parameter, effective: dict[str, Any]) -> str:
    cond = p.condition
    if cond.parent not in effective:
        return f"inactive: its parent {cond.parent} is inactive"
    return (
        f"inactive: {cond.parent}={effective[cond.parent]!r}, and {p.name} is active only when "
        f"{cond.parent} is one of {list(cond.values)}"
    )


def _active_reason(p: Parameter, effective: dict[str, Any]) -> str:
    if p.condition is None:
        return "every trial needs it"
    return f"active: {p.condition.parent}={effective[p.condition.parent]!r}"
