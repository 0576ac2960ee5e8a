"""Automated early stopping with the semantics of Vertex's StudySpec stopping specs.

Shared by the local backend (EarlyStopper) and the Vertex emulator (the pure rules below), so
both backends stop the same trials.

median (MedianAutomatedStoppingSpec), from study.proto: "stops a pending Trial if the Trial's best
objective_value is strictly below the median 'performance' of all completed Trials reported up to
the Trial's last measurement. 'Performance' refers to the running average of the objective values
reported by the Trial in each measurement." So every completed trial with a measurement at or
before the current x contributes the mean of its values up to x.

decay_curve (DecayCurveAutomatedStoppingSpec): "predict the final objective value of a Trial based
on the already completed Trials and the intermediate measurements of the current Trial. Early
stopping is requested for the current Trial if there is very low probability to exceed the optimal
value found so far." Vertex fits a Gaussian process over curves; here the current curve is
extrapolated optimistically (its latest improvement continuing with the geometric decay it shows)
and the trial stops when even that cannot beat the best completed value.

x is the step, or elapsed seconds with use_elapsed_duration. With no completed trial, nothing
stops. The local backend adds two knobs of its own, min_steps and min_trials, whose defaults
(1, 1) behave as Vertex does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from trialkit.status import COMPLETED, STOPPED

Curve = Sequence[tuple[float, float]]  # (x, value) in the order reported


def _finite(curve: Curve) -> list[float]:
    return [v for _, v in curve if math.isfinite(v)]


def median_should_stop(current: Curve, completed: Sequence[Curve], minimize: bool) -> bool:
    if not current:
        return False
    x_last = current[-1][0]
    means = []
    for curve in completed:
        upto = [v for x, v in curve if x <= x_last and math.isfinite(v)]
        if upto:
            means.append(sum(upto) / len(upto))
    values = _finite(current)
    if not means or not values:
        return False
    median = statistics.median(means)
    return min(values) > median if minimize else max(values) < median


def decay_curve_should_stop(current: Curve, completed: Sequence[Curve], minimize: bool) -> bool:
    bests = [min(v) if minimize else max(v) for v in map(_finite, completed) if v]
    values = _finite(current)
    if not bests or len(values) < 2:
        return False
    best = min(bests) if minimize else max(bests)
    predicted = _optimistic_final(values, minimize)
    return predicted > best if minimize else predicted < best


RULES = {"median": median_should_stop, "decay_curve": decay_curve_should_stop}


class EarlyStopper:
    def __init__(self, spec: Any, minimize: bool) -> None:
        self.policy = getattr(spec, "policy", "none")
        self.min_steps = int(getattr(spec, "min_steps", 1) or 1)
        self.min_trials = int(getattr(spec, "min_trials", 1) or 1)
        self.minimize = minimize
        self.curves: dict[str, dict[int, float]] = {}
        self.completed: list[str] = []

    def seed_completed(self, trial_id: str, curve: dict[int, float]) -> None:
        """Known completed trial (e.g. on resume)."""
        self.curves[trial_id] = dict(curve)
        self.completed.append(trial_id)

    def should_stop(self, trial_id: str, step: int, value: float) -> bool:
        self.curves.setdefault(trial_id, {})[step] = value
        if self.policy == "none" or step < self.min_steps:
            return False
        if len(self.completed) < self.min_trials:
            return False
        rule = RULES.get(self.policy)
        if rule is None:
            return False
        completed = [sorted(self.curves[t].items()) for t in self.completed]
        return rule(sorted(self.curves[trial_id].items()), completed, self.minimize)

    def trial_ended(self, trial_id: str, status: str) -> None:
        if status in (COMPLETED, STOPPED) and self.curves.get(trial_id):
            self.completed.append(trial_id)


def _optimistic_final(values: list[float], minimize: bool) -> float:
    """Where the curve is heading if its latest improvement keeps decaying geometrically.

    With the last two improvements d1, d2 the decay ratio is r = d2/d1 (capped at 1: never
    assumed to accelerate); the curve is extrapolated for as many more steps as it has run so far
    (the stopper does not know a trial's epoch budget): d2*r + d2*r^2 + ... Returns the predicted
    best value.
    """
    sign = -1.0 if minimize else 1.0  # improvement direction
    gains = [sign * (b - a) for a, b in zip(values, values[1:], strict=False)]
    best = min(values) if minimize else max(values)
    latest = gains[-1]
    if latest <= 0:
        return best  # no longer improving: its best measurement is what it has
    previous = gains[-2] if len(gains) >= 2 else latest
    ratio = min(1.0, latest / previous) if previous > 0 else 1.0
    remaining = sum(latest * ratio**k for k in range(1, len(values) + 1))
    predicted = values[-1] + sign * remaining
    return min(predicted, best) if minimize else max(predicted, best)
