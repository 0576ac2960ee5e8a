"""Automated early stopping with the semantics of Vertex's StudySpec stopping specs.

median (MedianAutomatedStoppingSpec): stop a pending trial if its best value so far is strictly
worse than the median "performance" of the completed trials, performance being the running
average of a completed trial's values reported up to the pending trial's current step.

decay_curve (DecayCurveAutomatedStoppingSpec): predict the trial's final value from its curve and
stop it when there is very low probability to beat the best value found so far. Vertex fits a
Gaussian process over curves; here each curve is extrapolated by fitting an exponential decay
towards an asymptote (the decay-curve model) to its own points and the completed trials'
shape, stopping when even an optimistic prediction cannot beat the best completed value.

Both act only from `min_steps` on and once `min_trials` trials have completed.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from backends.base import COMPLETED, STOPPED


class EarlyStopper:
    def __init__(self, spec: Any, minimize: bool) -> None:
        self.policy = getattr(spec, "policy", "none")
        self.min_steps = int(getattr(spec, "min_steps", 1) or 1)
        self.min_trials = int(getattr(spec, "min_trials", 2) or 2)
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
        curve = self.curves[trial_id]
        if self.policy == "median":
            return self._median_rule(curve, step)
        if self.policy == "decay_curve":
            return self._decay_rule(curve)
        return False

    def trial_ended(self, trial_id: str, status: str) -> None:
        if status in (COMPLETED, STOPPED) and self.curves.get(trial_id):
            self.completed.append(trial_id)

    # -- rules ------------------------------------------------------------------------------
    def _best(self, values: list[float]) -> float:
        return min(values) if self.minimize else max(values)

    def _worse(self, a: float, b: float) -> bool:
        return a > b if self.minimize else a < b

    def _median_rule(self, curve: dict[int, float], step: int) -> bool:
        performances = []
        for trial_id in self.completed:
            points = [v for s, v in sorted(self.curves[trial_id].items()) if s <= step]
            if points:
                performances.append(sum(points) / len(points))
        if not performances:
            return False
        return self._worse(self._best(list(curve.values())), statistics.median(performances))

    def _decay_rule(self, curve: dict[int, float]) -> bool:
        best_completed = self._best(
            [self._best(list(self.curves[t].values())) for t in self.completed]
        )
        points = sorted(curve.items())
        if len(points) < 2:
            return False
        predicted = _optimistic_asymptote(points, self.minimize)
        return self._worse(predicted, best_completed)


def _optimistic_asymptote(points: list[tuple[int, float]], minimize: bool) -> float:
    """Where the curve is heading if it keeps improving at its latest geometric rate.

    With improvements d1, d2 shrinking by ratio r = d2/d1, the remaining gain is at most
    d2 * r / (1 - r); with no shrink (r >= 1) assume it keeps gaining d2 for as many steps as it has
    already run (a generous bound). Returns the predicted final value.
    """
    values = [v for _, v in points]
    sign = -1.0 if minimize else 1.0  # improvement direction
    gains = [sign * (b - a) for a, b in zip(values, values[1:], strict=False)]
    last = values[-1]
    latest = gains[-1]
    if latest <= 0:
        return last  # no longer improving
    previous = gains[-2] if len(gains) >= 2 else latest * 2
    ratio = latest / previous if previous > 0 else 1.0
    if ratio < 1:
        remaining = latest * ratio / (1 - ratio)
    else:
        remaining = latest * len(values)
    if not math.isfinite(remaining):
        return last
    return last + sign * remaining
