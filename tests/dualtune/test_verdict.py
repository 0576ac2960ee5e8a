"""The study's verdict: noise, best vs guess, the confirmed winner and the beyond-noise rule."""

from __future__ import annotations

import math
import statistics

import pytest

from dualtune.verdict import GUESS, Runs, decide, runs, t_sf

NAN = float("nan")
# The numbers: the guess at five seeds, and a study whose best sits inside that noise.
GUESS_FIVE = [0.2072, 0.2077, 0.2081, 0.2125, 0.2144]


def flip(values):
    """The same study as a maximized metric (1 - rmse): every verdict must mirror."""
    if isinstance(values, dict):
        return {k: flip(v) for k, v in values.items()}
    if isinstance(values, list):
        return [flip(v) for v in values]
    return None if values is None or math.isnan(values) else 1.0 - values


# -- Student's t ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "df", "p"),
    [(6.3138, 1, 0.05), (2.9200, 2, 0.05), (2.1318, 4, 0.05), (2.2281, 10, 0.025),
     (1.6449, 1e6, 0.05), (0.0, 3, 0.5), (-2.1318, 4, 0.95)],
)  # fmt: skip
def test_t_tail_matches_the_tables(t, df, p):
    assert t_sf(t, df) == pytest.approx(p, abs=2e-5)


def test_t_tail_matches_scipy_and_the_infinite_ends():
    stats = pytest.importorskip("scipy.stats")
    for df in (0.5, 1, 1.7, 2, 3, 4.5, 8, 30, 200):
        for t in (-7.0, -2.5, -0.4, 0.1, 1.0, 2.2, 5.0, 40.0):
            assert t_sf(t, df) == pytest.approx(stats.t.sf(t, df), rel=1e-9, abs=1e-15)
    assert (t_sf(math.inf, 3), t_sf(-math.inf, 3)) == (0.0, 1.0)


# -- noise ----------------------------------------------------------------------------------------


def test_noise_is_the_sample_sd_of_the_baseline_and_unknown_below_two_runs():
    assert runs([1.0, None, NAN, 3.0, math.inf]) == Runs((1.0, 3.0))
    assert decide([1.0, 3.0], {}, None).noise == pytest.approx(math.sqrt(2.0))
    five = decide(GUESS_FIVE, {}, None)
    assert five.noise == pytest.approx(statistics.stdev(GUESS_FIVE))
    assert five.guess.mean == pytest.approx(0.20998)
    one = decide([0.21], {"1": 0.20}, None)
    assert one.guess == Runs((0.21,)) and one.noise is None
    assert one.best_vs_guess.in_noise is None
    assert "(noise unknown)" in one.best_line
    assert decide([], {"1": 0.2}, None).guess is None
    assert decide([NAN, None], {"1": 0.2}, None).guess is None


def test_best_vs_guess_difference_relative_and_in_noise_units():
    v = decide([0.20, 0.22], {"a": 0.2010, "b": 0.1890, "c": NAN}, {"b": [0.19, 0.19]})
    assert v.best_trial == "b" and v.best_value == 0.1890
    c = v.best_vs_guess
    assert (c.value, c.guess) == (0.1890, pytest.approx(0.21))
    assert c.improvement == pytest.approx(0.021)
    assert c.relative_pct == pytest.approx(10.0)
    assert c.in_noise == pytest.approx(0.021 / math.sqrt(0.0002))
    assert (
        v.best_line == "best trial b: 0.1890 vs guess 0.2100 +- 0.014 (10.0% better, 1.5 x noise)"
    )
    m = decide(flip([0.20, 0.22]), flip({"a": 0.2010, "b": 0.1890}), None, "maximize")
    assert m.best_trial == "b" and m.best_vs_guess.improvement == pytest.approx(0.021)
    worse = decide([0.20, 0.22], {"a": 0.25}, None).best_vs_guess
    assert worse.improvement == pytest.approx(-0.04) and worse.relative_pct < 0


# -- the winner -----------------------------------------------------------------------------------


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_a_trial_beyond_noise_wins(goal):
    baseline, trials = [0.210, 0.212, 0.211], {"1": 0.190, "2": 0.205, "3": 0.208}
    confirm = {"1": [0.189, 0.191], "2": [0.204, 0.206], "3": [0.209, 0.207]}
    if goal == "maximize":
        baseline, trials, confirm = flip(baseline), flip(trials), flip(confirm)
    v = decide(baseline, trials, confirm, goal)
    assert v.winner == "1" and v.beyond_noise is True
    assert [c.id for c in v.candidates] == ["1", "2", "3", GUESS]
    assert v.winner_mean == pytest.approx(flip(0.19) if goal == "maximize" else 0.19)
    assert v.improvement_pct == pytest.approx(100 * 0.021 / abs(v.guess.mean))
    assert v.test.df == 2 + 1 + 1 + 1  # baseline 3 runs, three confirmed pairs
    assert v.test.level == pytest.approx(0.05 / 3)  # the best of 3 confirmed
    assert v.words.startswith("trial 1 beat the guess by ")
    assert "confirmed mean" in v.words and "over 2 fresh seeds" in v.words
    assert v.words.endswith("trial 1 wins; finalize trains it")


def test_the_pooled_test_by_hand():
    v = decide([1.0, 3.0], {"a": 0.0}, {"a": [-1.0, 0.0, 1.0]})
    # s_p^2 = (1 * 2 + 2 * 1) / 3; se = s_p * sqrt(1/3 + 1/2); gain = 2 - 0
    pooled = math.sqrt(4 / 3)
    assert (v.test.df, v.test.pooled_sd) == (3, pytest.approx(pooled))
    assert v.test.t == pytest.approx(2 / (pooled * math.sqrt(1 / 3 + 1 / 2)))
    assert v.test.p_value == pytest.approx(t_sf(v.test.t, 3))


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_within_noise_the_guess_wins(goal):
    """The issue's study: every trial inside the guess's seed noise."""
    trials = {"03": 0.2078, "05": 0.2090, "07": 0.2132}
    confirm = {"03": [0.2075, 0.2120], "05": [0.2081, 0.2102], "07": [0.2110, 0.2150]}
    baseline = GUESS_FIVE
    if goal == "maximize":
        baseline, trials, confirm = flip(baseline), flip(trials), flip(confirm)
    v = decide(baseline, trials, confirm, goal)
    assert v.candidates[0].id == "05"  # the best confirmed mean beats the guess's mean...
    assert v.beyond_noise is False  # ...by less than the noise
    assert v.winner == GUESS and v.improvement_pct == 0.0
    assert v.winner_mean == pytest.approx(v.guess.mean)
    assert v.words.startswith("no trial beat the guess beyond noise (best: trial 05, ")
    assert v.words.endswith("the guess wins; finalize trains the trainer's defaults")
    assert "vs guess 0.2100 +- 0.0033)" in v.words if goal == "minimize" else "0.7900 +-" in v.words


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_a_trial_worse_than_the_guess_never_wins(goal):
    """Its tuning score was the best (selection flatters it); its fresh runs are worse."""
    baseline, trials = [0.2100, 0.2101], {"1": 0.150, "2": 0.230}
    confirm = {"1": [0.2500, 0.2501], "2": [0.2400, 0.2400]}
    if goal == "maximize":
        baseline, trials, confirm = flip(baseline), flip(trials), flip(confirm)
    v = decide(baseline, trials, confirm, goal)
    assert v.best_trial == "1" and v.winner == GUESS
    assert v.candidates[0].id == GUESS and v.beyond_noise is False
    # even when the noise is unknown (every configuration ran once) a worse mean cannot win
    once = decide(baseline[:1], trials, {k: vs[:1] for k, vs in confirm.items()}, goal)
    assert once.test is None and once.winner == GUESS


def test_the_confirmed_mean_leaves_the_tuning_score_out():
    v = decide([0.30, 0.31], {"1": 0.01}, {"1": [0.20, 0.22]})
    (trial,) = [c for c in v.candidates if c.id == "1"]
    assert trial.runs == Runs((0.20, 0.22)) and trial.tuning_value == 0.01 and trial.confirmed
    assert v.winner_mean == pytest.approx(0.21)


def test_ties_go_to_the_guess_then_to_the_better_tuning_score_then_the_order():
    tie = decide([0.2, 0.2], {"1": 0.1}, {"1": [0.2, 0.2]})  # zero noise, equal means
    assert tie.winner == GUESS and tie.candidates[0].id == GUESS and tie.beyond_noise is False
    two = decide(
        [0.5, 0.5], {"a": 0.30, "b": 0.29, "c": 0.29}, {"a": [0.1], "b": [0.1], "c": [0.1]}
    )
    assert [c.id for c in two.candidates] == ["b", "c", "a", GUESS]
    assert two.winner == "b"  # zero pooled noise: any strict gain is beyond it
    assert two.test.p_value == 0.0 and two.best_trial == "b"  # first of equal tuning scores
    maxed = decide([0.5, 0.5], {"a": 0.7, "b": 0.8}, {"a": [0.9], "b": [0.9]}, "maximize")
    assert [c.id for c in maxed.candidates] == ["b", "a", GUESS]


def test_a_deterministic_trainer_has_zero_noise():
    v = decide([0.2, 0.2], {"1": 0.19}, {"1": [0.19, 0.19]})
    assert v.noise == 0.0 and v.best_vs_guess.in_noise is None
    assert v.winner == "1" and v.test.t == math.inf and v.beyond_noise is True
    assert "x noise" not in v.words and v.words.startswith("trial 1 beat the guess by 5.0% (")


# -- what is missing ------------------------------------------------------------------------------


def test_no_usable_trial_the_guess_wins():
    v = decide([0.21, 0.22], {"1": None, "2": NAN}, {})
    assert v.best_trial is None and v.best_vs_guess is None and v.winner == GUESS
    assert v.words == (
        "no usable trial (guess 0.2150 +- 0.0071): the guess wins; finalize trains the "
        "trainer's defaults"
    )
    assert v.best_line == "no usable trial (guess 0.2150 +- 0.0071)"
    assert decide([0.21, 0.22], {}, None).winner == GUESS


def test_failed_confirmation_runs_are_dropped_and_an_all_failed_trial_is_out():
    v = decide([0.30, 0.31], {"1": 0.1, "2": 0.2}, {"1": [NAN, None], "2": [0.2, NAN, 0.2]})
    assert [c.id for c in v.candidates] == ["2", GUESS] and v.winner == "2"
    assert v.candidates[0].runs == Runs((0.2, 0.2))
    failed = decide([0.30, 0.31], {"1": 0.1}, {"1": [NAN]})
    assert failed.winner == GUESS
    assert failed.words.startswith("no trial could be confirmed: every confirmation run failed")


def test_without_confirmation_the_tuning_scores_stand_in_and_say_so():
    v = decide(GUESS_FIVE, {"1": 0.150, "2": 0.2, "3": 0.21, "4": NAN}, None)
    assert [c.id for c in v.candidates] == ["1", "2", GUESS, "3"]  # 0.21 is worse than 0.20998
    assert [c.confirmed for c in v.candidates] == [False, False, True, False]
    assert v.winner == "1" and v.test.df == 4 and v.test.level == pytest.approx(0.05 / 3)
    assert "its tuning score, not confirmed at fresh seeds" in v.words


def test_without_noise_the_better_mean_wins_and_the_words_say_it_is_unknown():
    v = decide([0.21], {"1": 0.19}, None)
    assert v.winner == "1" and v.test is None and v.beyond_noise is None
    assert "the noise is unknown" in v.words and "cannot be told" in v.words
    assert v.words.endswith("finalize trains trial 1")


def test_without_a_baseline_the_best_trial_wins_unmeasured():
    v = decide([], {"1": 0.19, "2": 0.18}, {"1": [0.17, 0.18], "2": [0.19, 0.2]})
    assert v.winner == "1" and v.guess is None and v.noise is None
    assert v.improvement_pct is None and v.winner_vs_guess is None and v.test is None
    assert "no baseline ran" in v.words and v.words.endswith("finalize trains trial 1")
    assert v.best_line == "best trial 2: 0.1800 (no baseline: not compared with the guess)"
    unconfirmed = decide([], {"1": 0.19}, {"1": [NAN]})
    assert unconfirmed.winner == "1" and unconfirmed.winner_mean == 0.19
    assert "not confirmed" in unconfirmed.words


def test_nothing_usable_and_no_baseline_no_winner():
    v = decide([], {"1": NAN}, {})
    assert v.winner is None and v.winner_mean is None
    assert v.words == "no usable trial and no usable baseline run: no winner"


def test_a_goal_must_be_minimize_or_maximize():
    with pytest.raises(ValueError, match="goal must be minimize or maximize"):
        decide([1.0], {}, None, "lower")
