"""Automated early stopping: the median rule of StudySpec.MedianAutomatedStoppingSpec.

study.proto: "The median automated stopping rule stops a pending Trial if the Trial's best
objective_value is strictly below the median 'performance' of all completed Trials reported up to
the Trial's last measurement. Currently, 'performance' refers to the running average of the
objective values reported by the Trial in each measurement."

So, after each new measurement of an active trial at x (its step, or its elapsed seconds when
use_elapsed_duration is set): every completed trial with a measurement at or before x contributes
the mean of its values up to x; the trial stops when its best value so far is strictly worse
("below" for MAXIMIZE, above for MINIMIZE) than the median of those means. With no completed
trial to compare against, nothing stops.

decay_curve_stopping_spec and convex_automated_stopping_spec are accepted but not applied.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

Curve = Sequence[tuple[float, float]]  # (x, value) in the order reported


def median_should_stop(current: Curve, completed: Sequence[Curve], minimize: bool) -> bool:
    if not current:
        return False
    x_last = current[-1][0]
    means = []
    for curve in completed:
        upto = [v for x, v in curve if x <= x_last and math.isfinite(v)]
        if upto:
            means.append(sum(upto) / len(upto))
    if not means:
        return False
    median = statistics.median(means)
    values = [value for _, value in current if math.isfinite(value)]
    if not values:
        return False
    if minimize:
        return min(values) > median
    return max(values) < median
