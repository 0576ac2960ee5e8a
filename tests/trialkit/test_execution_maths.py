"""Repeated runs: their seeds, and N executions combined into one trial's curve and score."""

from __future__ import annotations

import math

import pytest

from trialkit.executions import SEED_LIMIT, Combined, combine_executions, run_seeds

NAN = float("nan")


def test_seeds_are_stable_distinct_and_in_range():
    seeds = run_seeds("baseline", 50, base=7)
    assert seeds == run_seeds("baseline", 50, base=7)  # same study, same seeds (resume)
    assert len(set(seeds)) == 50 and all(1 <= s < SEED_LIMIT for s in seeds)
    assert run_seeds("baseline", 3, base=7) == seeds[:3]  # asking for more keeps the first
    assert not set(run_seeds("confirm/4", 50, base=7)) & set(seeds)  # another key: others
    assert run_seeds("baseline", 3, base=8) != seeds[:3]  # another study: others
    assert run_seeds("baseline", 0) == ()
    with pytest.raises(ValueError, match="count must be >= 0"):
        run_seeds("baseline", -1)


def test_the_curve_is_the_mean_per_step_over_the_executions_that_reported_it():
    combined = combine_executions(
        [{1: 0.40, 2: 0.30, 3: 0.20}, [(1, 0.50), (2, 0.20)], {1: 0.30, 2: NAN, 3: 0.10}],
        minimize=True,
    )
    assert [s for s, _ in combined.curve] == [1, 2, 3]
    assert [v for _, v in combined.curve] == pytest.approx([0.40, 0.25, 0.15])
    assert combined.counts == (3, 2, 2)
    # Keras Tuner's rule: each execution's best, averaged
    assert combined.execution_scores == (0.20, 0.20, 0.10)
    assert combined.score == pytest.approx(0.5 / 3)
    assert combined.curve_score == pytest.approx(0.15)
    assert (combined.executions, combined.scored) == (3, 3)


def test_maximize_and_last():
    curves = [{1: 0.6, 2: 0.9, 3: 0.7}, {1: 0.5, 2: 0.8, 3: 0.8}]
    best = combine_executions(curves, minimize=False)
    assert best.execution_scores == (0.9, 0.8) and best.score == pytest.approx(0.85)
    assert best.curve_score == pytest.approx(0.85)  # the mean curve peaks at step 2
    last = combine_executions(curves, minimize=False, selection="last")
    assert last.execution_scores == (0.7, 0.8) and last.score == pytest.approx(0.75)
    assert last.curve_score == pytest.approx(last.score)  # every step reported: equal for last


def test_the_mean_curve_never_beats_the_mean_of_the_bests():
    curves = [{1: 0.3, 2: 0.1, 3: 0.2}, {1: 0.1, 2: 0.3, 3: 0.25}]
    combined = combine_executions(curves, minimize=True)
    assert combined.score == pytest.approx(0.1)
    assert combined.curve_score == pytest.approx(0.2) and combined.curve_score >= combined.score


def test_an_execution_without_a_finite_value_does_not_count():
    combined = combine_executions([{1: NAN}, {}, {1: 0.4, 2: 0.3}], minimize=True)
    assert combined.execution_scores == (None, None, 0.3)
    assert (combined.executions, combined.scored, combined.score) == (3, 1, 0.3)
    assert combined.counts == (1, 1)
    nothing = combine_executions([{1: NAN, 2: math.inf * 0}, {}], minimize=True)
    assert nothing.score is None and nothing.curve_score is None
    assert nothing.counts == (0, 0) and all(math.isnan(v) for _, v in nothing.curve)
    assert combine_executions([], minimize=True) == Combined((), (), (), None, None)


def test_one_execution_is_the_trial_itself_and_a_re_reported_step_replaces():
    single = combine_executions([[(1, 0.5), (2, 0.4), (2, 0.35)]], minimize=True)
    assert single.curve == ((1, 0.5), (2, 0.35))
    assert single.score == single.curve_score == 0.35


def test_selection_must_be_best_or_last():
    with pytest.raises(ValueError, match="selection must be best or last"):
        combine_executions([{1: 0.1}], minimize=True, selection="mean")
