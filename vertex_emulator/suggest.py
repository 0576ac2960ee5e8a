"""Suggestion algorithms: what the emulator's "Vizier" proposes next.

- RANDOM_SEARCH: independent draws, uniform or log-uniform per scale_type (reverse log: dense
  near the top), seeded by the emulator's seed and the job's display name.
- GRID_SEARCH: the Cartesian grid of INTEGER/DISCRETE/CATEGORICAL values (first parameter
  varies slowest; a conditional child is expanded only under the parent values that enable it).
  DOUBLE parameters are refused at create, as Vertex does. The study ends when the grid does.
- ALGORITHM_UNSPECIFIED (Vertex's default, Vizier's Bayesian optimisation): with the vizier
  extra installed (pip install -e '.[vizier]'), Open Source Vizier's GP-UCB-PE, the designer the
  Vizier service runs for it (trialkit/vizier_designer.py), conditions flattened for it. Without
  the extra, Keras Tuner's Gaussian-process Bayesian optimisation (BayesianOptimizationOracle,
  Matern kernel, UCB acquisition; its first max(3 * dimensions, 3) suggestions random).
  Either is fed each finished trial's final measurement; `bayesian_designer()` says which
  (the emulator's info endpoint and start-up text show it).

An algorithm suggests and records; running trials is the scheduler's job (tuning.py).
"""

from __future__ import annotations

import abc
import math
import random
from collections.abc import Iterator
from pathlib import Path

from trialkit import vizier_designer
from vertex_emulator.errors import invalid
from vertex_emulator.specs import (
    CATEGORICAL,
    DISCRETE,
    DOUBLE,
    INTEGER,
    LOG,
    REVERSE_LOG,
    Param,
    Value,
    active_assignment,
    cast,
    walk,
)

GRID_SEARCH, RANDOM_SEARCH = 2, 3  # StudySpec.Algorithm; 0 = unspecified (Bayesian)


class Suggester(abc.ABC):
    """Ask/tell: suggest the next trial's values, be told how a trial ended."""

    @abc.abstractmethod
    def suggest(self, trial_id: str) -> dict[str, Value] | None:
        """Values for the next trial, or None once the space is exhausted."""

    def tell(self, trial_id: str, value: float | None) -> None:  # noqa: B027 - optional hook
        """The trial's final measurement, or None when it was infeasible."""

    def replay(self, trial_id: str, values: dict[str, Value], final: float | None, ended: bool):
        """A trial suggested before the emulator restarted, with the values it ran with: step
        past it as if suggested now (a seeded draw or a grid stays in step), and tell how it
        ended if it did."""
        self.suggest(trial_id)
        if ended:
            self.tell(trial_id, final)


def check_algorithm(algorithm: int, params: list[Param]) -> None:
    if algorithm not in (0, GRID_SEARCH, RANDOM_SEARCH):
        raise invalid(f"Unsupported study_spec.algorithm {algorithm}.")
    doubles = [p.id for p in walk(params) if p.kind == DOUBLE]
    if algorithm == GRID_SEARCH and doubles:
        raise invalid(
            f"GRID_SEARCH cannot search DOUBLE parameters {doubles}: all parameters must be "
            "INTEGER, CATEGORICAL or DISCRETE."
        )


def make_suggester(
    algorithm: int,
    params: list[Param],
    metric: str,
    minimize: bool,
    seed: int,
    state_dir: Path,
    bayesian: str = "auto",
) -> Suggester:
    if algorithm == GRID_SEARCH:
        return GridSuggester(params)
    if algorithm == RANDOM_SEARCH:
        return RandomSuggester(params, seed)
    if _uses_vizier(bayesian):
        return VizierSuggester(params, minimize, seed)
    return BayesianSuggester(params, metric, minimize, seed, state_dir)


BAYESIAN_CHOICES = ("auto", "vizier", "keras_tuner")


def _uses_vizier(bayesian: str) -> bool:
    if bayesian not in BAYESIAN_CHOICES:
        raise ValueError(f"bayesian={bayesian!r}: use one of {', '.join(BAYESIAN_CHOICES)}")
    if bayesian == "vizier" and not vizier_designer.available():
        hint = vizier_designer.INSTALL_HINT
        raise ValueError(f"bayesian='vizier': Open Source Vizier is not installed; {hint}")
    return bayesian == "vizier" or (bayesian == "auto" and vizier_designer.available())


def resolve_bayesian(bayesian: str) -> str:
    """`bayesian` with "auto" decided: "vizier" or "keras_tuner" (the emulator decides once, at
    start, so the designer it states is the one every job uses)."""
    return "vizier" if _uses_vizier(bayesian) else "keras_tuner"


def bayesian_designer(bayesian: str = "auto") -> str:
    """Which designer serves ALGORITHM_UNSPECIFIED with the `bayesian` choice, in words."""
    if _uses_vizier(bayesian):
        name = vizier_designer.DESIGNERS[vizier_designer.DEFAULT_DESIGNER]
        return f"Open Source Vizier {vizier_designer.version()} {name}"
    hint = "" if bayesian == "keras_tuner" else f"; {vizier_designer.INSTALL_HINT} for Vizier's"
    return f"Keras Tuner's Gaussian process (BayesianOptimizationOracle), not Vizier{hint}"


class RandomSuggester(Suggester):
    def __init__(self, params: list[Param], seed: int) -> None:
        self.params = params
        self.rng = random.Random(seed)

    def suggest(self, trial_id: str) -> dict[str, Value]:
        return active_assignment(self.params, lambda p: sample(p, self.rng))


def sample(param: Param, rng: random.Random) -> Value:
    if param.kind in (DISCRETE, CATEGORICAL):
        return rng.choice(param.values)
    if param.kind == INTEGER and param.scale not in (LOG, REVERSE_LOG):
        return rng.randint(int(param.low), int(param.high))
    if param.scale in (LOG, REVERSE_LOG) and param.low < param.high:
        drawn = math.exp(rng.uniform(math.log(param.low), math.log(param.high)))
        if param.scale == REVERSE_LOG:  # dense near the top of the range
            drawn = param.low + param.high - drawn
    else:
        drawn = rng.uniform(param.low, param.high)
    drawn = min(max(drawn, param.low), param.high)
    return cast(param, drawn)


class GridSuggester(Suggester):
    def __init__(self, params: list[Param]) -> None:
        self.points = grid(params)

    def suggest(self, trial_id: str) -> dict[str, Value] | None:
        return next(self.points, None)


def grid(params: list[Param]) -> Iterator[dict[str, Value]]:
    """Lazily, every point of the grid over `params` (and their enabled children)."""
    if not params:
        yield {}
        return
    head, rest = params[0], params[1:]
    for chosen in _expand(head):
        for tail in grid(rest):
            yield {**chosen, **tail}


def _expand(param: Param) -> Iterator[dict[str, Value]]:
    for value in param.grid_values():
        for below in grid(list(param.active_children(value))):
            yield {param.id: cast(param, value), **below}


class BayesianSuggester(Suggester):
    """Keras Tuner's BayesianOptimizationOracle over the StudySpec (not Vizier)."""

    def __init__(
        self, params: list[Param], metric: str, minimize: bool, seed: int, state_dir: Path
    ) -> None:
        import keras_tuner as kt  # heavy (imports Keras): only for Bayesian jobs

        self.params = params
        self.metric = metric
        hps = kt.HyperParameters()
        for param in params:
            _declare(hps, param)
        self.oracle = kt.oracles.BayesianOptimizationOracle(
            objective=kt.Objective(metric, "min" if minimize else "max"),
            max_trials=None,  # the scheduler counts trials
            hyperparameters=hps,
            allow_new_entries=False,
            tune_new_entries=False,
            seed=seed,
            max_consecutive_failed_trials=10**9,  # the job's max_failed_trial_count decides
        )
        self.oracle._set_project_dir(str(state_dir), "oracle")  # noqa: SLF001 - no public setter
        self.oracle.verbose = 0
        self.trials: dict[str, object] = {}

    def suggest(self, trial_id: str) -> dict[str, Value] | None:
        trial = self.oracle.create_trial(tuner_id=trial_id)
        if trial.status != "RUNNING":
            return None
        self.trials[trial_id] = trial
        values = trial.hyperparameters.values
        return active_assignment(
            self.params, lambda p: cast(p, values[p.id]) if p.id in values else None
        )

    def replay(self, trial_id: str, values: dict[str, Value], final: float | None, ended: bool):
        """As Suggester.replay, but the oracle learns the values the trial ran with."""
        trial = self.oracle.create_trial(tuner_id=trial_id)
        if trial.status == "RUNNING":
            trial.hyperparameters.values.update(values)
            self.trials[trial_id] = trial
        if ended:
            self.tell(trial_id, final)

    def tell(self, trial_id: str, value: float | None) -> None:
        trial = self.trials.pop(trial_id, None)
        if trial is None:
            return
        if value is None or not math.isfinite(value):
            trial.status = "FAILED"
        else:
            self.oracle.update_trial(trial.trial_id, {self.metric: value})
            trial.status = "COMPLETED"
        self.oracle.end_trial(trial)


class VizierSuggester(Suggester):
    """Open Source Vizier's GP-UCB-PE over the StudySpec, every conditional child a dimension;
    a suggestion keeps only the children its parents' values enable."""

    def __init__(self, params: list[Param], minimize: bool, seed: int) -> None:
        self.params = params
        dims = [_dim(p) for p in walk(params)]
        self.designer = vizier_designer.VizierDesigner(dims, minimize, seed)

    def suggest(self, trial_id: str) -> dict[str, Value]:
        point = self.designer.suggest(trial_id)
        return active_assignment(self.params, lambda p: cast(p, point[p.id]))

    def tell(self, trial_id: str, value: float | None) -> None:
        self.designer.tell(trial_id, value)


def _scale(param: Param) -> str:
    """The scale's name as the Vizier designer and Keras Tuner's sampling both spell it."""
    return {LOG: "log", REVERSE_LOG: "reverse_log"}.get(param.scale, "linear")


def _dim(param: Param) -> vizier_designer.Dim:
    scale = _scale(param)
    kind = {DOUBLE: "double", INTEGER: "integer", DISCRETE: "discrete"}.get(param.kind)
    if kind is None:
        return vizier_designer.Dim(param.id, "categorical", values=param.values)
    return vizier_designer.Dim(param.id, kind, param.low, param.high, param.values, scale)


def _declare(hps, param: Param) -> None:
    sampling = _scale(param)
    if param.kind == DOUBLE:
        hps.Float(param.id, param.low, param.high, sampling=sampling)
    elif param.kind == INTEGER:
        hps.Int(param.id, int(param.low), int(param.high), sampling=sampling)
    elif param.kind == DISCRETE:
        hps.Choice(param.id, [float(v) for v in param.values], ordered=True)
    else:
        hps.Choice(param.id, list(param.values))
    for parent_values, child in param.children:
        with hps.conditional_scope(param.id, list(parent_values)):
            _declare(hps, child)
