"""The stopping rules both backends share, on hand-made curves."""

from __future__ import annotations

import pytest

from search_spaces.model import EarlyStopping
from trialkit.early_stopping import EarlyStopper, decay_curve_should_stop, median_should_stop

GOOD = [(1, 0.50), (2, 0.40), (3, 0.35), (4, 0.33)]
OK = [(1, 0.55), (2, 0.45), (3, 0.40), (4, 0.38)]


def test_median_stops_a_trial_worse_than_the_completed_running_averages():
    assert median_should_stop([(1, 0.9), (2, 0.85)], [GOOD, OK], minimize=True)
    assert not median_should_stop([(1, 0.5), (2, 0.41)], [GOOD, OK], minimize=True)
    # maximize mirrors it
    flipped = [[(x, -v) for x, v in c] for c in (GOOD, OK)]
    assert median_should_stop([(1, -0.9), (2, -0.85)], flipped, minimize=False)


def test_decay_curve_stops_a_curve_that_cannot_reach_the_best():
    # flattening far above the best completed value (0.33): even its optimistic end is worse
    assert decay_curve_should_stop([(1, 0.9), (2, 0.8), (3, 0.78)], [GOOD], minimize=True)
    # still falling fast: its extrapolation reaches below 0.33, so it keeps going
    assert not decay_curve_should_stop([(1, 0.6), (2, 0.45), (3, 0.36)], [GOOD], minimize=True)
    # one point is not a curve
    assert not decay_curve_should_stop([(1, 5.0)], [GOOD], minimize=True)


@pytest.mark.parametrize("policy", ["median", "decay_curve"])
def test_stopper_waits_for_min_steps_and_min_trials(policy):
    stopper = EarlyStopper(EarlyStopping(policy=policy, min_steps=3, min_trials=2), True)
    for trial_id, curve in (("a", GOOD), ("b", OK)):
        for step, value in curve:
            assert not stopper.should_stop(trial_id, step, value)
        if trial_id == "a":
            stopper.trial_ended("a", "COMPLETED")
    assert not stopper.should_stop("c", 1, 0.95)  # only one completed trial so far
    stopper.trial_ended("b", "COMPLETED")
    assert not stopper.should_stop("c", 2, 0.94)  # before min_steps
    assert stopper.should_stop("c", 3, 0.93)


def test_failed_trials_do_not_count_as_completed():
    stopper = EarlyStopper(EarlyStopping(policy="median", min_steps=1, min_trials=1), True)
    stopper.should_stop("a", 1, 0.1)
    stopper.trial_ended("a", "FAILED")
    assert not stopper.should_stop("b", 1, 0.9)
