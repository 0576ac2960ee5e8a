"""The one rule for a usable trial, the best one and the ranking (trialkit/status.py), which the
backends, the display, the recorders and the confirmation's choice of top trials all use."""

from __future__ import annotations

import math

from trialkit.status import COMPLETED, FAILED, RUNNING, STOPPED, best_of, ranked, usable

TRIALS = [
    ("a", COMPLETED, 0.30),
    ("b", FAILED, 0.10),  # failed: never ranked, whatever its value
    ("c", STOPPED, 0.20),  # stopped early: its best so far stands
    ("d", COMPLETED, math.nan),
    ("e", RUNNING, 0.05),
    ("f", COMPLETED, 0.20),  # ties c: the given order decides
    ("g", COMPLETED, None),
]


def test_usable_is_completed_or_stopped_with_a_finite_value():
    assert [k for k, s, f in TRIALS if usable(s, f)] == ["a", "c", "f"]


def test_ranked_lists_usable_trials_best_first_ties_in_given_order():
    assert ranked(TRIALS, minimize=True) == [("c", 0.2), ("f", 0.2), ("a", 0.3)]
    assert ranked(TRIALS, minimize=False) == [("a", 0.3), ("c", 0.2), ("f", 0.2)]
    assert ranked([("x", FAILED, 1.0)], minimize=True) == []


def test_best_of_is_the_first_of_the_ranking():
    assert best_of(TRIALS, minimize=True) == ("c", 0.2)
    assert best_of(TRIALS, minimize=False) == ("a", 0.3)
    assert best_of([("x", RUNNING, 1.0)], minimize=True) is None
