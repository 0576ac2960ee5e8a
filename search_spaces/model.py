"""The pure data model of a search space: what to tune, how to judge it, which trainer runs it.

Imports neither keras_tuner nor aiplatform: each target has its own compiler module. Every value
type is a frozen dataclass; validation that needs the source file's name lives in the loader, this
module only guarantees internal consistency of what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PARAMETER_TYPES = ("integer", "double", "categorical", "discrete", "boolean", "fixed")
SCALES = ("linear", "log", "reverse_log")
GOALS = ("minimize", "maximize")
ALGORITHMS = ("bayesian", "random", "grid", "hyperband")
SELECTIONS = ("best", "last")
STOPPING_POLICIES = ("none", "median", "decay_curve")


@dataclass(frozen=True)
class Condition:
    """A child parameter is active only while `parent` takes one of `values`."""

    parent: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Parameter:
    """One hyperparameter. Which fields matter depends on `type`:

    integer/double: min, max, scale, step (optional); categorical: values (strings);
    discrete: values (increasing numbers); boolean: nothing; fixed: value.
    `default` is the trainer's own initial guess (optional). `condition` makes it conditional.
    """

    name: str
    type: str
    min: float | int | None = None
    max: float | int | None = None
    scale: str = "linear"
    step: float | int | None = None
    values: tuple[Any, ...] = ()
    value: Any = None
    default: Any = None
    condition: Condition | None = None

    def cast(self, raw: Any) -> Any:
        """Cast a value coming back from a backend (Vertex sends 9.0 for an integer) to this type."""
        if self.type == "integer":
            number = float(raw)
            if not number.is_integer():
                raise ValueError(f"{self.name}: {raw!r} is not an integer")
            return int(number)
        if self.type in ("double", "discrete"):
            return float(raw)
        if self.type == "boolean":
            if isinstance(raw, str):
                return raw.strip().lower() in ("true", "1", "yes")
            return bool(raw)
        if self.type == "categorical":
            return str(raw)
        if self.type == "fixed":
            return type(self.value)(raw) if self.value is not None else raw
        raise ValueError(f"{self.name}: unknown type {self.type!r}")

    def as_flag(self, value: Any) -> str:
        """The trainer flag for `value`, in the `--name=value` form Vertex uses."""
        if isinstance(value, bool):
            value = "true" if value else "false"
        return f"--{self.name}={value}"


@dataclass(frozen=True)
class Metric:
    tag: str = "val_rmse"
    goal: str = "minimize"

    @property
    def minimize(self) -> bool:
        return self.goal == "minimize"

    def better(self, a: float, b: float) -> bool:
        """True when `a` is strictly better than `b` for this goal."""
        return a < b if self.minimize else a > b


@dataclass(frozen=True)
class Trainer:
    """What a trial runs: a Python module (`python -m module`) or a script path, plus fixed args."""

    module: str | None = "trainer.task"
    script: str | None = None
    tuning_args: tuple[str, ...] = ()
    finalize_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Budget:
    max_trials: int = 10
    parallel_trials: int = 2
    max_failed_trials: int = 3


@dataclass(frozen=True)
class EarlyStopping:
    """Vertex's median / decay-curve automated stopping, applied by both backends."""

    policy: str = "none"
    min_steps: int = 1
    use_elapsed_duration: bool = False


@dataclass(frozen=True)
class SearchSpace:
    name: str
    parameters: tuple[Parameter, ...]
    metric: Metric = field(default_factory=Metric)
    trainer: Trainer = field(default_factory=Trainer)
    budget: Budget = field(default_factory=Budget)
    algorithm: str = "bayesian"
    measurement_selection: str = "best"
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    hyperband_max_epochs: int = 4
    source: str = "<memory>"

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def cast_values(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Cast a backend's parameter dict to declared types, dropping keys the space does not declare
        (tuner-internal keys such as Hyperband's tuner/epochs)."""
        known = {p.name: p for p in self.parameters}
        return {k: known[k].cast(v) for k, v in raw.items() if k in known}

    def flags(self, values: dict[str, Any]) -> list[str]:
        """argv flags for the declared parameters in `values`, in declaration order."""
        return [p.as_flag(values[p.name]) for p in self.parameters if p.name in values]
