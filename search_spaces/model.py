"""The pure data model of a search space: what to tune, how to judge it, which trainer runs it.

Imports neither keras_tuner nor aiplatform: each target has its own compiler module. Every value
type is a frozen dataclass validated on construction against the rules of BOTH targets (Keras
Tuner and Vertex AI), so a space that constructs compiles everywhere. A violation raises
SpaceError naming the field by its YAML path (``parameters.lr.min: ...; fix``); the loader
prefixes the file name. Lists given for tuple fields are stored as tuples.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from trialkit.errors import SpaceError

PARAMETER_TYPES = ("integer", "double", "categorical", "discrete", "boolean", "fixed")
SCALES = ("linear", "log", "reverse_log")
GOALS = ("minimize", "maximize")
ALGORITHMS = ("bayesian", "random", "grid", "hyperband", "vizier")
SELECTIONS = ("best", "last")
STOPPING_POLICIES = ("none", "median", "decay_curve")
# Vertex conditions need a DISCRETE, INTEGER or CATEGORICAL parent; a boolean compiles to one.
PARENT_TYPES = ("integer", "discrete", "categorical", "boolean")
MAX_DISCRETE_VALUES = 1000  # Vertex DISCRETE limit; stepped ranges compile to DISCRETE
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_MODULE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
SEED_FLAG_PATTERN = re.compile(r"^--[A-Za-z0-9][A-Za-z0-9_-]*$")


def did_you_mean(word: Any, options: tuple[str, ...] | list[str]) -> str:
    """' (did you mean 'x'?)' for the closest option, or ''."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _error(path: str, problem: str, fix: str) -> SpaceError:
    return SpaceError(f"{path}: {problem}; {fix}")


def _one_of(path: str, value: Any, options: tuple[str, ...], what: str) -> None:
    if value not in options:
        raise _error(
            path,
            f"unknown {what} {value!r}{did_you_mean(value, options)}",
            f"use one of {_ors(options)}",
        )


def _ors(options: tuple[str, ...] | list[str]) -> str:
    return ", ".join(options[:-1]) + " or " + options[-1] if len(options) > 1 else options[0]


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (YAML's true is an int to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(path: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _error(path, f"must be a positive integer (got {value!r})", "use a whole number >= 1")


def _as_tuple(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, list):
        object.__setattr__(obj, name, tuple(value))


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()}, a boolean"
    kind = type(value).__name__
    kind = {"str": "a string", "bool": "a boolean", "NoneType": "nothing"}.get(kind, kind)
    return f"{value!r}, {kind}" if value is not None else "nothing"


@dataclass(frozen=True)
class Condition:
    """A child parameter is active only while `parent` takes one of `values`."""

    parent: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        _as_tuple(self, "values")


@dataclass(frozen=True)
class Parameter:
    """One hyperparameter. Which fields matter depends on `type`:

    integer/double: min, max, scale, step (optional); categorical: values (strings);
    discrete: values (increasing numbers), scale; boolean: nothing; fixed: value.
    `step` follows Keras Tuner: added between values on a linear scale, multiplied (> 1) on a
    log or reverse_log scale. `default` is the trainer's own initial guess (optional; Keras
    Tuner only). `condition` makes it conditional.
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

    def __post_init__(self) -> None:
        _as_tuple(self, "values")
        if not isinstance(self.values, tuple):
            raise _error(
                self._path("values"),
                f"must be a list (got {_describe(self.values)})",
                "write values: [a, b, c]",
            )
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise _error(
                f"parameters.{self.name}",
                "not a valid flag name",
                "use letters, digits, _ and - only, starting with a letter or _",
            )
        _one_of(self._path("type"), self.type, PARAMETER_TYPES, "type")
        _one_of(self._path("scale"), self.scale, SCALES, "scale")
        self._check_unused_fields()
        _TYPE_CHECKS[self.type](self)
        self._check_default()
        self._check_condition_shape()

    def _path(self, field_name: str) -> str:
        return f"parameters.{self.name}.{field_name}"

    # -- what a parameter can take -------------------------------------------------------------

    def step_count(self) -> int:
        """How many values a stepped integer/double range holds (Keras Tuner's count)."""
        lo, hi, step = self.min, self.max, self.step
        if self.scale == "linear":
            return math.floor((hi - lo) / step + 1e-9) + 1
        return math.floor(math.log(hi / lo, step) + 1e-8) + 1

    def step_values(self) -> tuple[float | int, ...]:
        """The values of a stepped range, increasing (what Vertex's DISCRETE spec receives)."""
        lo, hi, step = self.min, self.max, self.step
        indices = range(self.step_count())
        if self.scale == "linear":
            raw = [lo + i * step for i in indices]
        else:
            raw = [lo * step**i for i in indices]
            if self.scale == "reverse_log":
                raw = sorted(hi + lo - v for v in raw)
        if self.type == "integer":
            return tuple(int(round(v)) for v in raw)
        return tuple(float(f"{v:.12g}") for v in raw)  # 0.30000000000000004 -> 0.3

    def allows(self, value: Any) -> bool:
        """Whether `value` (already of the declared kind) is one this parameter can take."""
        if self.type == "categorical":
            return isinstance(value, str) and value in self.values
        if self.type == "boolean":
            return isinstance(value, bool)
        if self.type == "fixed":
            return type(value) is type(self.value) and value == self.value
        if not is_number(value):
            return False
        if self.type == "discrete":
            return any(math.isclose(value, v, rel_tol=1e-9) for v in self.values)
        if self.type == "integer" and not isinstance(value, int):
            return False
        if not self.min <= value <= self.max:
            return False
        if self.step is None:
            return True
        return any(math.isclose(value, v, rel_tol=1e-9) for v in self.step_values())

    def python_type(self) -> type:
        """The Python type of this parameter's values (what cast returns)."""
        if self.type == "fixed":
            return type(self.value)
        if self.type == "discrete":
            return int if all(isinstance(v, int) for v in self.values) else float
        return {"integer": int, "double": float, "boolean": bool, "categorical": str}[self.type]

    def cast(self, raw: Any) -> Any:
        """Cast a value coming back from a backend to this type: Vertex sends 9.0 for an integer,
        "true"/"false" for a boolean. A discrete parameter of whole numbers casts to int."""
        kind = self.python_type()
        if kind is bool:
            if isinstance(raw, str):
                return raw.strip().lower() in ("true", "1", "yes")
            return bool(raw)
        if kind is int:
            number = float(raw)
            if not number.is_integer():
                raise ValueError(f"{self.name}: {raw!r} is not an integer")
            return int(number)
        if kind is float:
            return float(raw)
        return str(raw)

    def as_flag(self, value: Any) -> str:
        """The trainer flag for `value`, in the `--name=value` form Vertex uses."""
        if isinstance(value, bool):
            value = "true" if value else "false"
        return f"--{self.name}={value}"

    # -- validation ----------------------------------------------------------------------------

    def _check_range(self) -> None:
        for bound in ("min", "max"):
            self._check_bound(bound, getattr(self, bound))
        if self.min > self.max:
            raise _error(
                self._path("min"), f"min ({self.min}) > max ({self.max})", "swap min and max"
            )
        if self.min == self.max:
            raise _error(
                self._path("max"),
                f"min equals max ({self.min}): nothing to tune",
                f"use type: fixed with value: {self.min}, or widen the range",
            )
        if self.scale != "linear" and self.min <= 0:
            raise _error(
                self._path("min"),
                f"{self.scale} scale needs min > 0 (got {self.min})",
                "use a positive min or scale: linear",
            )
        if self.step is not None:
            self._check_step()

    def _check_bound(self, bound: str, value: Any) -> None:
        if value is None:
            raise _error(
                self._path(bound), "missing", f"{_a(self.type)} parameter needs min and max"
            )
        if not is_number(value):
            raise _error(
                self._path(bound),
                f"must be a number (got {_describe(value)})",
                "write it unquoted, e.g. 0.0001 or 1e-4",
            )
        if self.type == "integer" and not isinstance(value, int):
            raise _error(
                self._path(bound),
                f"an integer parameter needs a whole number (got {value!r})",
                "use a whole number, or type: double",
            )

    def _check_step(self) -> None:
        path, step = self._path("step"), self.step
        if not is_number(step) or step <= 0:
            raise _error(path, f"must be a positive number (got {step!r})", "use e.g. step: 2")
        if self.type == "integer" and not isinstance(step, int):
            raise _error(path, f"an integer step must be whole (got {step!r})", "use e.g. step: 2")
        if self.scale != "linear" and step <= 1:
            raise _error(
                path,
                f"on a {self.scale} scale step is a multiplier and must be > 1 (got {step})",
                "use e.g. step: 2 (each value doubles) or scale: linear",
            )
        count = self.step_count()
        if count < 2:
            raise _error(
                path,
                f"step {step} leaves a single value in [{self.min}, {self.max}]",
                "use a smaller step or type: fixed",
            )
        if count > MAX_DISCRETE_VALUES:
            raise _error(
                path,
                f"gives {count} values; Vertex DISCRETE takes at most {MAX_DISCRETE_VALUES}",
                "use a larger step, or drop step for a continuous range",
            )

    def _check_categorical(self) -> None:
        path = self._path("values")
        if not self.values:
            raise _error(path, "missing or empty", 'list the choices, e.g. values: ["a", "b"]')
        for v in self.values:
            if is_number(v) or isinstance(v, bool):
                raise _error(
                    path,
                    f"categorical values must be strings (got {_describe(v)})",
                    f'quote it ("{str(v).lower() if isinstance(v, bool) else v}")'
                    " or use type: discrete for numbers",
                )
            if not isinstance(v, str) or not v:
                raise _error(path, f"values must be non-empty strings (got {v!r})", "fix the list")
        seen: set[str] = set()
        for v in self.values:  # a set, not list.count: 100,000 values answer at once
            if v in seen:
                raise _error(path, f"duplicate value {v!r}", "list each value once")
            seen.add(v)
        if self.scale != "linear":
            raise _error(
                self._path("scale"), "categorical parameters take no scale", "remove scale"
            )

    def _check_discrete(self) -> None:
        path, values = self._path("values"), self.values
        if not values:
            raise _error(path, "missing or empty", "list the numbers, e.g. values: [16, 32, 64]")
        for v in values:
            if not is_number(v):
                raise _error(
                    path,
                    f"discrete values must be numbers (got {_describe(v)})",
                    "unquote the numbers, or use type: categorical for strings",
                )
        if len(values) > MAX_DISCRETE_VALUES:
            raise _error(
                path,
                f"{len(values)} values; Vertex DISCRETE takes at most {MAX_DISCRETE_VALUES}",
                "use fewer values or an integer/double range",
            )
        for a, b in zip(values, values[1:], strict=False):
            if not b - a >= 1e-10:
                raise _error(
                    path,
                    f"values must be strictly increasing ({a} then {b})",
                    "sort them and drop duplicates",
                )
        if self.scale != "linear" and values[0] <= 0:
            raise _error(
                self._path("scale"),
                f"{self.scale} scale needs all values > 0 (got {values[0]})",
                "use positive values or scale: linear",
            )

    def _check_boolean(self) -> None:
        if self.scale != "linear":
            raise _error(self._path("scale"), "boolean parameters take no scale", "remove scale")

    def _check_fixed(self) -> None:
        if self.value is None:
            raise _error(self._path("value"), "missing", "a fixed parameter needs value: X")
        if not (is_number(self.value) or isinstance(self.value, (str, bool))):
            raise _error(
                self._path("value"),
                f"must be a number, string or boolean (got {_describe(self.value)})",
                "give a single scalar value",
            )
        if self.scale != "linear":
            raise _error(self._path("scale"), "fixed parameters take no scale", "remove scale")

    def _check_unused_fields(self) -> None:
        used = _FIELDS_BY_TYPE[self.type]
        unused = {
            "min": self.min is not None,
            "max": self.max is not None,
            "step": self.step is not None,
            "values": bool(self.values),
            "value": self.value is not None,
            "default": self.default is not None and self.type == "fixed",
        }
        for name, given in unused.items():
            if given and name not in used:
                raise _error(
                    self._path(name),
                    f"{self.type} parameters take no {name}",
                    f"remove it ({_a(self.type)} parameter takes {_ors(sorted(used))})",
                )

    def _check_default(self) -> None:
        if self.default is None or self.type == "fixed":
            return
        if not self.allows(self.default):
            raise _error(
                self._path("default"),
                f"{self.default!r} is not a value this {self.type} parameter can take",
                "use a value inside its range or list, or remove default",
            )

    def _check_condition_shape(self) -> None:
        c = self.condition
        if c is None:
            return
        if not isinstance(c, Condition):
            raise _error(
                self._path("condition"), "must be a Condition", "use {parent: NAME, values: [...]}"
            )
        if not isinstance(c.parent, str) or not c.parent:
            raise _error(self._path("condition.parent"), "missing", "name the parent parameter")
        if not isinstance(c.values, tuple) or not c.values:
            raise _error(
                self._path("condition.values"),
                f"missing, empty or not a list (got {_describe(c.values)})",
                "list the parent's values that activate this parameter, e.g. values: [adam]",
            )


_TYPE_CHECKS = {
    "integer": Parameter._check_range,
    "double": Parameter._check_range,
    "categorical": Parameter._check_categorical,
    "discrete": Parameter._check_discrete,
    "boolean": Parameter._check_boolean,
    "fixed": Parameter._check_fixed,
}

# The fields (beyond name, type and condition) each type takes; the loader rejects the others.
_FIELDS_BY_TYPE = {
    "integer": ("min", "max", "scale", "step", "default"),
    "double": ("min", "max", "scale", "step", "default"),
    "categorical": ("values", "default"),
    "discrete": ("values", "scale", "default"),
    "boolean": ("default",),
    "fixed": ("value",),
}


def fields_for(type_: str) -> tuple[str, ...]:
    """The YAML fields a parameter of `type_` takes besides type and condition."""
    return _FIELDS_BY_TYPE[type_]


@dataclass(frozen=True)
class Metric:
    tag: str = "val_rmse"
    goal: str = "minimize"

    def __post_init__(self) -> None:
        if not isinstance(self.tag, str) or not self.tag.strip():
            raise _error(
                "metric.tag",
                "missing" if not self.tag else f"must be a string (got {_describe(self.tag)})",
                "name the metric the trainer reports through hypertune, e.g. tag: val_rmse",
            )
        _one_of("metric.goal", self.goal, GOALS, "goal")

    @property
    def minimize(self) -> bool:
        return self.goal == "minimize"

    def better(self, a: float, b: float) -> bool:
        """True when `a` is strictly better than `b` for this goal."""
        return a < b if self.minimize else a > b


@dataclass(frozen=True)
class Trainer:
    """What a trial runs: a Python module (`python -m module`) or a script path, plus fixed args.

    A script replaces the default module: Trainer(script="train.py") has module None.
    """

    module: str | None = "trainer.task"
    script: str | None = None
    tuning_args: tuple[str, ...] = ()
    finalize_args: tuple[str, ...] = ()
    seed_flag: str | None = None  # the trainer's training-seed flag, e.g. "--seed"

    def __post_init__(self) -> None:
        if self.script is not None:
            object.__setattr__(self, "module", None)
            if not isinstance(self.script, str) or not self.script:
                raise _error("trainer.script", "must be a path", "e.g. script: train.py")
        elif self.module is None:
            raise _error("trainer", "needs module or script", "e.g. module: trainer.task")
        elif not isinstance(self.module, str) or not _MODULE_PATTERN.match(self.module):
            raise _error(
                "trainer.module",
                f"{self.module!r} is not a Python module name",
                "use a dotted name such as trainer.task",
            )
        for name in ("tuning_args", "finalize_args"):
            _as_tuple(self, name)
            args = getattr(self, name)
            bad = [args] if not isinstance(args, tuple) else [a for a in args if type(a) is not str]
            if bad:
                raise _error(
                    f"trainer.{name}",
                    f"must be a list of strings (got {_describe(bad[0])})",
                    'write one string per argument, e.g. ["--num_epochs=3"]',
                )
        _check_seed_flag(self.seed_flag)

    def seed_args(self, seed: int) -> tuple[str, ...]:
        """The argv that sets the training seed (``("--seed=7",)``), or () without a seed flag:
        then repeated runs of one configuration are plain re-runs."""
        return () if self.seed_flag is None else (f"{self.seed_flag}={int(seed)}",)


@dataclass(frozen=True)
class Budget:
    max_trials: int = 10
    parallel_trials: int = 2
    max_failed_trials: int = 3

    def __post_init__(self) -> None:
        for name in ("max_trials", "parallel_trials"):
            _positive_int(f"budget.{name}", getattr(self, name))
        failed = self.max_failed_trials
        if isinstance(failed, bool) or not isinstance(failed, int) or failed < 0:
            raise _error(
                "budget.max_failed_trials",
                f"must be an integer >= 0 (got {failed!r})",
                "use 0 to stop at the first failed trial, or more",
            )
        if self.parallel_trials > self.max_trials:
            raise _error(
                "budget.parallel_trials",
                f"{self.parallel_trials} parallel trials exceed max_trials ({self.max_trials})",
                "use parallel_trials <= max_trials",
            )


@dataclass(frozen=True)
class EarlyStopping:
    """Vertex's median / decay-curve automated stopping, applied by both backends.

    Vertex takes only the policy and use_elapsed_duration; min_steps and min_trials tune the
    local backend's implementation. Their defaults (1 and 1) are Vertex's behaviour: judge from
    the first measurement, as soon as one trial has completed; so both backends stop the same
    trials unless a study asks the local backend to wait longer.
    """

    policy: str = "none"
    min_steps: int = 1
    use_elapsed_duration: bool = False
    min_trials: int = 1

    def __post_init__(self) -> None:
        _one_of("early_stopping.policy", self.policy, STOPPING_POLICIES, "policy")
        _positive_int("early_stopping.min_steps", self.min_steps)
        _positive_int("early_stopping.min_trials", self.min_trials)
        if not isinstance(self.use_elapsed_duration, bool):
            raise _error(
                "early_stopping.use_elapsed_duration",
                f"must be true or false (got {self.use_elapsed_duration!r})",
                "write true or false, unquoted",
            )


# -- results you can trust: the trainer's seed, the baseline, confirmation, executions ------------


def _check_seed_flag(flag: Any) -> None:
    if flag is None:
        return
    if not isinstance(flag, str) or not SEED_FLAG_PATTERN.match(flag):
        raise _error(
            "trainer.seed_flag",
            f"must be a --flag name (got {_describe(flag)})",
            "write the trainer's training-seed flag, e.g. seed_flag: --seed, or remove it",
        )


def _count(path: str, value: Any, off: str) -> None:
    """A whole number >= 1; `off` says how to turn the feature off instead."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _error(path, f"must be a whole number >= 1 (got {value!r})", f"use e.g. 2, {off}")


@dataclass(frozen=True)
class Baseline:
    """The initial guess as a baseline: the trainer with the tuning args and no parameter flags
    (its own defaults), run `repeats` times at different training seeds. Their spread is the
    study's noise (two runs at least to measure it). `enabled=False` (YAML `baseline: false`)
    turns it off; `repeats` itself is never 0."""

    repeats: int = 2
    enabled: bool = True

    def __post_init__(self) -> None:
        _enabled("trust.baseline", self.enabled)
        _count("trust.baseline.repeats", self.repeats, "or baseline: false to turn it off")

    @property
    def runs(self) -> int:
        """How many baseline runs a study makes (0 when off)."""
        return self.repeats if self.enabled else 0


@dataclass(frozen=True)
class Confirm:
    """Before a study names its winner, its `top` best trials are re-run `repeats` times each at
    fresh training seeds; the winner is the best mean of those runs, the baseline competing.
    `enabled=False` (YAML `confirm: false`) turns it off."""

    top: int = 3
    repeats: int = 2
    enabled: bool = True

    def __post_init__(self) -> None:
        _enabled("trust.confirm", self.enabled)
        _count("trust.confirm.top", self.top, "or confirm: false to turn confirmation off")
        _count("trust.confirm.repeats", self.repeats, "or confirm: false to turn it off")

    @property
    def runs(self) -> int:
        """The most confirmation runs a study makes (0 when off; fewer with fewer usable
        trials than `top`)."""
        return self.top * self.repeats if self.enabled else 0


def _enabled(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _error(path, f"enabled must be true or false (got {value!r})", "write true or false")


@dataclass(frozen=True)
class Trust:
    """What makes a study's claim checkable: the guess as a baseline (its spread is the noise),
    the top trials confirmed at fresh seeds, and Keras Tuner's executions_per_trial (each trial
    run N times at different seeds, scored by the mean of the executions' scores)."""

    baseline: Baseline = field(default_factory=Baseline)
    confirm: Confirm = field(default_factory=Confirm)
    executions_per_trial: int = 1

    def __post_init__(self) -> None:
        for name, kind in (("baseline", Baseline), ("confirm", Confirm)):
            if not isinstance(getattr(self, name), kind):
                raise _error(f"trust.{name}", f"must be a {kind.__name__}", "fix the code")
        if (
            isinstance(self.executions_per_trial, bool)
            or not isinstance(self.executions_per_trial, int)
            or self.executions_per_trial < 1
        ):
            raise _error(
                "trust.executions_per_trial",
                f"must be a whole number >= 1 (got {self.executions_per_trial!r})",
                "use 1 (each trial runs once) or more (each trial's score is the mean)",
            )


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
    trust: Trust = field(default_factory=Trust)

    def __post_init__(self) -> None:
        _as_tuple(self, "parameters")
        if not isinstance(self.name, str) or not self.name.strip():
            raise _error("name", "must be a non-empty string", "e.g. name: flights")
        if not self.parameters:
            raise _error("parameters", "empty", "declare at least one parameter to tune")
        _one_of("algorithm", self.algorithm, ALGORITHMS, "algorithm")
        _one_of("measurement_selection", self.measurement_selection, SELECTIONS, "selection")
        _positive_int("hyperband_max_epochs", self.hyperband_max_epochs)
        self._check_unique_names()
        for p in self.parameters:
            self._check_condition(p)
            if self.algorithm == "grid" and p.type == "double" and p.step is None:
                raise _error(
                    p._path("step"),
                    "algorithm: grid cannot search a continuous double (Vertex GRID_SEARCH)",
                    f"give {p.name} a step, or use algorithm: random or bayesian",
                )
        self._check_trainer_args()
        self._check_seed_flag_use()

    def _check_unique_names(self) -> None:
        seen: set[str] = set()
        for p in self.parameters:
            if not isinstance(p, Parameter):
                raise _error(
                    "parameters", f"expected Parameter objects (got {p!r})", "fix the code"
                )
            if p.name in seen:
                raise _error(f"parameters.{p.name}", "declared twice", "rename or remove one")
            seen.add(p.name)

    def _check_condition(self, child: Parameter) -> None:
        cond = child.condition
        if cond is None:
            return
        path = child._path("condition.parent")
        if cond.parent not in self.names:
            raise _error(
                path,
                f"unknown parameter {cond.parent!r}{did_you_mean(cond.parent, self.names)}",
                "declare the parent under parameters",
            )
        if cond.parent == child.name:
            raise _error(path, "a parameter cannot be its own parent", "name another parameter")
        if self.names.index(cond.parent) > self.names.index(child.name):
            raise _error(
                path,
                f"{cond.parent!r} is declared after {child.name!r}",
                f"declare {cond.parent} before {child.name}",
            )
        parent = self.parameter(cond.parent)
        if parent.type not in PARENT_TYPES:
            raise _error(
                path,
                f"{cond.parent!r} is a {parent.type}; Vertex conditions need a parent of type "
                f"{_ors(PARENT_TYPES)}",
                f"make {cond.parent} {_ors(PARENT_TYPES)}, or drop the condition",
            )
        for value in cond.values:
            if not parent.allows(value):
                raise _error(
                    child._path("condition.values"),
                    f"{value!r} is not a value of {cond.parent!r}",
                    f"use values {cond.parent} can take ({_describe_domain(parent)})",
                )

    def _check_trainer_args(self) -> None:
        for name in ("tuning_args", "finalize_args"):
            for arg in getattr(self.trainer, name):
                flag = arg.split("=", 1)[0].lstrip("-")
                if arg.startswith("--") and flag in self.names:
                    raise _error(
                        f"trainer.{name}",
                        f"{arg!r} sets the tuned parameter {flag!r}",
                        "remove it; each trial receives --" + flag + " from the tuner",
                    )

    def _check_seed_flag_use(self) -> None:
        """dualtune sets the seed flag itself (each repeat its own seed): no parameter and no
        tuning arg may set it too."""
        if not isinstance(self.trust, Trust):
            raise _error("trust", f"must be a Trust (got {self.trust!r})", "fix the code")
        flag = self.trainer.seed_flag
        if flag is None:
            return
        if flag[2:] in self.names:
            raise _error(
                f"parameters.{flag[2:]}",
                f"is the trainer's seed_flag {flag}, which dualtune sets for each repeated run",
                "remove the parameter, or remove trainer.seed_flag",
            )
        for arg in self.trainer.tuning_args:
            if arg == flag or arg.startswith(flag + "="):
                raise _error(
                    "trainer.tuning_args",
                    f"{arg!r} sets the seed_flag {flag}, which dualtune sets for each run",
                    f"remove {arg!r} (or remove trainer.seed_flag)",
                )

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def cast_values(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Cast a backend's parameter dict to declared types, dropping keys the space does not
        declare (tuner-internal keys such as Hyperband's tuner/epochs)."""
        known = {p.name: p for p in self.parameters}
        return {k: known[k].cast(v) for k, v in raw.items() if k in known}

    def flags(self, values: dict[str, Any]) -> list[str]:
        """argv flags for the declared parameters in `values`, in declaration order."""
        return [p.as_flag(values[p.name]) for p in self.parameters if p.name in values]


def _describe_domain(p: Parameter) -> str:
    if p.type == "boolean":
        return "true or false"
    if p.type in ("categorical", "discrete"):
        return ", ".join(str(v) for v in p.values)
    if p.step is not None:
        return ", ".join(str(v) for v in p.step_values()[:10]) + (
            ", ..." if p.step_count() > 10 else ""
        )
    return f"whole numbers from {p.min} to {p.max}"
