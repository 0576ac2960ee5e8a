"""The arithmetic of docs/benchmarks.md's trust section: benchmarks/trust_claims.py (a claimed
gain over the guess against its re-measurement) and signal_noise.py's short-against-long rank
correlation. No training here: the scripts' numbers are only as good as these functions."""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys

import pytest

from tests.conftest import REPO

BENCH = REPO / "benchmarks"


@pytest.fixture(scope="module")
def scripts():
    """(trust_claims, signal_noise), loaded as the scripts load each other."""
    loaded = []
    try:
        for name in ("signal_noise", "trust_claims"):
            spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses look their module up
            spec.loader.exec_module(module)
            loaded.append(module)
        yield loaded[1], loaded[0]
    finally:  # each script put its folder first on sys.path (they run as scripts)
        while str(BENCH) in sys.path:
            sys.path.remove(str(BENCH))
        for name in ("signal_noise", "trust_claims", "_common"):
            sys.modules.pop(name, None)


def test_gain_is_relative_to_the_guess_with_the_standard_error_of_two_means(scripts):
    tc, _ = scripts
    g = tc.gain([0.9, 1.1], [1.9, 2.1, 2.0])  # means 1.0 and 2.0: 50% better
    assert g.pct == pytest.approx(50.0)
    se = math.sqrt(statistics.variance([0.9, 1.1]) / 2 + statistics.variance([1.9, 2.1, 2.0]) / 3)
    assert g.se_pct == pytest.approx(100 * se / 2.0)
    assert g.interval == pytest.approx((50 - 2 * g.se_pct, 50 + 2 * g.se_pct))
    assert tc.gain([2.1, 2.3], [2.0, 2.0]).pct == pytest.approx(-10.0)  # worse: negative
    with pytest.raises(ValueError, match="at least two runs"):
        tc.gain([1.0], [2.0, 2.1])


def test_held_reads_a_trial_winner_and_a_guess_winner_differently(scripts):
    tc, _ = scripts
    sure, vague, worse = tc.Gain(2.0, 0.5), tc.Gain(0.6, 0.5), tc.Gain(-1.5, 0.5)
    assert tc.held(2.1, False, sure) == "held"  # beyond 2 se, size inside 1.0..3.0
    assert tc.held(5.0, False, sure) == "held (size off)"
    assert tc.held(1.0, False, vague) == "within noise"
    assert tc.held(1.0, False, worse) == "not held (size off)"
    assert tc.held(0.0, True, vague) == "held"  # the guess won: no trial beats it beyond 2 se
    assert tc.held(0.0, True, sure) == "not held (a trial beats the guess)"


def test_a_configuration_has_one_key_whichever_study_found_it(scripts):
    tc, _ = scripts
    assert tc.config_key({"b": 1, "a": "64,16"}) == tc.config_key({"a": "64,16", "b": 1})
    assert tc.config_key({}) == "{}"  # the guess


def test_the_budgets_come_from_flights_yaml(scripts):
    tc, _ = scripts
    assert tc.tuning_budget().label == "10000x2"
    assert tc.finalize_budget().label == "100000x10"


def test_bootstrap_interval_brackets_the_rank_correlation(scripts):
    _, sn = scripts
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert sn.bootstrap_spearman(a, [2 * x for x in a]) == (1.0, 1.0)  # the same order always
    b = [1.0, 3.0, 2.0, 5.0, 4.0, 8.0, 6.0, 7.0]
    low, high = sn.bootstrap_spearman(a, b, draws=500, seed=1)
    assert -1.0 <= low < sn.spearman(a, b) < high <= 1.0
    assert sn.bootstrap_spearman(a, b, draws=500, seed=1) == (low, high)  # seeded


def test_seeds_at_overrides_a_budgets_seeds_for_every_configuration(scripts):
    _, sn = scripts
    assert sn.parse_seeds_at("100000x10=1, 10000x2=3") == {"100000x10": 1, "10000x2": 3}
    args = argparse.Namespace(
        configs=2, draw_seed=0, default_seeds=2, config_seeds=2,
        budgets=[sn.Budget(10000, 2), sn.Budget(100000, 10)], seeds_at={"100000x10": 1},
    )  # fmt: skip
    runs = [(b, name, seed) for b, name, _, seed in sn.plan(args)]
    assert runs == [
        ("10000x2", "guess", 1), ("10000x2", "guess", 2), ("10000x2", "c1", 1),
        ("10000x2", "c1", 2), ("10000x2", "c2", 1), ("10000x2", "c2", 2),
        ("100000x10", "guess", 1), ("100000x10", "c1", 1), ("100000x10", "c2", 1),
    ]  # fmt: skip


def _run(budget: str, config: str, seed: int, val: float, test: float) -> dict:
    return {"budget": budget, "config": config, "seed": seed, "status": 0,
            "scores": {"20000": val, "test": test}}  # fmt: skip


def test_short_vs_long_ranks_short_means_against_long_test_means(scripts):
    _, sn = scripts
    short = {"guess": (0.30, 0.32), "c1": (0.50, 0.52), "c2": (0.40, 0.38), "c3": (0.20, 0.22)}
    runs = [_run("10000x2", n, s + 1, v, 0.0) for n, vs in short.items() for s, v in enumerate(vs)]
    long = {"guess": 0.25, "c1": 0.24, "c2": 0.26, "c3": 0.23}  # c1 and c2 swap places
    runs += [_run("100000x10", n, 1, 0.0, t) for n, t in long.items()]
    row = sn.short_vs_long_row(runs, "10000x2", "100000x10", "20000")
    means = [statistics.fmean(v) for v in short.values()]
    assert row[:4] == ["10000x2", "100000x10", "20000", 4]
    assert float(row[4]) == pytest.approx(sn.spearman(means, list(long.values())), abs=0.005)
    assert float(row[4]) == pytest.approx(0.4)  # ranks (2,4,3,1) vs (3,2,4,1)
    assert row[6] == "0.40..0.40"  # each seed alone ranks as the means do
    assert row[-1] == "-"  # one long seed: its noise unknown
    assert row[7] == "1.00 (3)"  # the better half (3 of 4) ranks alike


def test_confirmed_means_average_the_completed_confirmation_runs_per_trial(scripts):
    tc, _ = scripts
    executions = {
        "baseline-1": {"role": "baseline", "status": "COMPLETED", "final": 0.1, "trial_id": None},
        "confirm-03-1": {"role": "confirmation", "status": "COMPLETED", "final": 0.24,
                         "trial_id": "03"},
        "confirm-03-2": {"role": "confirmation", "status": "COMPLETED", "final": 0.26,
                         "trial_id": "03"},
        "confirm-07-1": {"role": "confirmation", "status": "FAILED", "final": None,
                         "trial_id": "07"},
        "confirm-07-2": {"role": "confirmation", "status": "COMPLETED", "final": 0.23,
                         "trial_id": "07"},
    }  # fmt: skip
    assert tc.confirmed_means(executions) == pytest.approx({"03": 0.25, "07": 0.23})


def test_a_guess_winner_is_judged_against_its_strongest_rival(scripts):
    tc, _ = scripts
    claim = tc.Claim("s", 1, "verdict", "baseline", {}, 0.0, 0.004, 0.24, "03", {}, 0.23, "")
    guess = [1.00, 1.02, 0.98]
    weak, strong = [1.01, 0.99, 1.00], [0.90, 0.91, 0.89]  # 0% and 10% better
    assert tc._held_text(claim, True, [], [weak], guess) == "held"
    assert tc._held_text(claim, True, [], [weak, strong], guess).startswith("not held")
    assert tc._held_text(claim, True, [], [[0.9]], guess) == "-"  # one run: no noise, no verdict
