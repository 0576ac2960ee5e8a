"""The verdict of a study: did tuning beat the initial guess beyond noise, and which one wins.

Pure numbers in, numbers and plain words out (no MLflow, no backend), so every reader (the live
display, `trials`, `compare`, the MLflow recorder's tags, finalize) states one verdict.

Inputs: the baseline runs' values (the guess: the trainer's own defaults at several training
seeds), each trial's tuning score, and the confirmation runs (trial id -> its values at fresh
seeds, for the top trials; None when confirmation is off).

- **Noise** is the sample sd (n - 1) of the baseline values: the spread of one configuration
  over training seeds. With fewer than 2 baseline values it is unknown (None).
- **Best vs guess** compares the best trial's tuning score with the guess's mean: the
  improvement (positive = better for the goal), relative to the guess (%), and in units of noise.
  It is descriptive: the best of many noisy scores is flattered by selection.
- **The winner** is decided on fresh runs: the trials' confirmed means (the confirmation runs
  only, never the tuning score that got them chosen) compete with the guess's mean. The best
  trial wins only when it beats the guess *beyond noise*; otherwise the guess wins ("baseline",
  and finalize trains the trainer's defaults). So the winner is never a trial whose confirmed
  mean is worse than (or tied with) the guess's. Without confirmation the trials' tuning scores
  stand in (flagged as unconfirmed); without a baseline the best trial wins, and the words say
  nothing measured it against the guess.

**Beyond noise** (the rule): a one-sided two-sample t-test of the best trial's runs against the
baseline's, with the sd pooled over every configuration run more than once (the baseline and
each confirmed trial): s_p^2 = sum((n_i - 1) s_i^2) / sum(n_i - 1), df = sum(n_i - 1),
t = improvement / (s_p * sqrt(1/n_trial + 1/n_guess)). It is beyond noise when
P(T_df >= t) < alpha / k, with alpha = 0.05 and k the number of trials the winner was picked
from (Bonferroni: the best of k looks better than any one of them). Pooling assumes the seed
noise is about the same for nearby configurations of one trainer at one budget; it uses every
group's spread and count and, with the defaults (2 baseline runs, 3 trials x 2 confirmations),
has 4 degrees of freedom where Welch's per-pair test would have 1 to 2 and could never show a
real gain. A zero pooled sd (a deterministic trainer) makes any strict improvement beyond noise.
When no configuration ran twice the test cannot be run: the better mean wins and the words
say the noise is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

GUESS = "baseline"  # the winner id when the trainer's own defaults win
ALPHA = 0.05


@dataclass(frozen=True)
class Runs:
    """The finite values of one configuration's runs (at different seeds)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values)

    @property
    def sd(self) -> float | None:
        """Sample sd (n - 1); None with fewer than 2 values."""
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(math.fsum((v - m) ** 2 for v in self.values) / (self.n - 1))


def runs(values: Iterable[float | None]) -> Runs:
    """Runs of the finite values among `values` (a failed run's None or NaN is dropped)."""
    return Runs(tuple(float(v) for v in values if v is not None and math.isfinite(v)))


@dataclass(frozen=True)
class Comparison:
    """A value against the guess's mean. improvement > 0 is better for the goal."""

    value: float
    guess: float
    improvement: float
    relative_pct: float | None  # improvement / |guess| in %; None when the guess is 0
    in_noise: float | None  # improvement / noise; None when the noise is unknown or 0


@dataclass(frozen=True)
class Candidate:
    """A contender for the winner: a trial (its confirmation runs, or its tuning score alone
    when unconfirmed) or the guess (id GUESS, its baseline runs)."""

    id: str
    runs: Runs
    confirmed: bool
    tuning_value: float | None = None


@dataclass(frozen=True)
class NoiseTest:
    """The one-sided pooled t-test of the best trial against the guess (see the module doc)."""

    t: float
    df: int
    p_value: float
    level: float  # alpha / k: beyond noise when p_value < level
    pooled_sd: float

    @property
    def beyond(self) -> bool:
        return self.p_value < self.level


@dataclass(frozen=True)
class Verdict:
    goal: str
    guess: Runs | None  # None: no baseline ran (or none was usable)
    noise: float | None  # the baseline's sd; None: unknown
    best_trial: str | None  # the best trial by its tuning score
    best_value: float | None
    best_vs_guess: Comparison | None
    candidates: tuple[Candidate, ...]  # best mean first, the guess among them
    winner: str | None  # a trial id, GUESS, or None (nothing usable at all)
    winner_vs_guess: Comparison | None
    test: NoiseTest | None  # None: no guess, no trial, or the noise is unknown
    words: str

    @property
    def beyond_noise(self) -> bool | None:
        """Did the best trial beat the guess beyond noise? None when that cannot be told."""
        return None if self.test is None else self.test.beyond

    @property
    def improvement_pct(self) -> float | None:
        """The winner against the guess, relative (%): 0.0 when the guess wins; None without
        a baseline. What the study run's improvement tag carries."""
        return None if self.winner_vs_guess is None else self.winner_vs_guess.relative_pct

    @property
    def winner_mean(self) -> float | None:
        found = [c for c in self.candidates if c.id == self.winner]
        return found[0].runs.mean if found else self.best_value if self.winner else None

    @property
    def best_line(self) -> str:
        """One line: the best trial's tuning score against the guess, with the noise."""
        if self.best_trial is None:
            return "no usable trial" + (f" (guess {_guess(self)})" if self.guess else "")
        line = f"best trial {self.best_trial}: {_fmt(self.best_value)}"
        if self.best_vs_guess is None:
            return line + " (no baseline: not compared with the guess)"
        return f"{line} vs guess {_guess(self)} ({_gain(self.best_vs_guess)})"


def decide(
    baseline: Sequence[float | None],
    trials: Mapping[str, float | None],
    confirmations: Mapping[str, Sequence[float | None]] | None,
    goal: str = "minimize",
    *,
    alpha: float = ALPHA,
) -> Verdict:
    """The verdict of one study (see the module doc for every rule).

    baseline: the guess's values at different seeds ([] when the baseline is off);
    trials: trial id -> tuning score (None/NaN: not usable); confirmations: trial id -> values
    at fresh seeds, None when confirmation is off; goal: "minimize" or "maximize".
    """
    if goal not in ("minimize", "maximize"):
        raise ValueError(f"goal must be minimize or maximize (got {goal!r})")
    minimize = goal == "minimize"
    guess: Runs | None = runs(baseline)
    guess = guess if guess.n else None
    noise = guess.sd if guess else None
    scored = {str(k): float(v) for k, v in trials.items() if v is not None and math.isfinite(v)}
    best = _best_trial(scored, minimize)
    contenders = _contenders(scored, confirmations, minimize)
    test = _test(contenders, guess, minimize, alpha) if contenders and guess else None
    winner = _winner(contenders, guess, test, minimize, best)
    ranked = _rank([*contenders, *([Candidate(GUESS, guess, True)] if guess else [])], minimize)
    compare = _comparer(guess, noise, minimize)
    win_value = next((c.runs.mean for c in ranked if c.id == winner), None)
    if win_value is None and winner is not None:
        win_value = scored[winner]
    verdict = Verdict(
        goal=goal,
        guess=guess,
        noise=noise,
        best_trial=best,
        best_value=scored.get(best) if best else None,
        best_vs_guess=compare(scored[best]) if best else None,
        candidates=tuple(ranked),
        winner=winner,
        winner_vs_guess=compare(win_value) if win_value is not None else None,
        test=test,
        words="",
    )
    return _with_words(verdict, confirmations is not None)


# -- the pieces -----------------------------------------------------------------------------------


def _better(a: float, b: float, minimize: bool) -> bool:
    return a < b if minimize else a > b


def _best_trial(scored: Mapping[str, float], minimize: bool) -> str | None:
    best = None
    for key, value in scored.items():  # the first of equal values wins, as trialkit.best_of
        if best is None or _better(value, scored[best], minimize):
            best = key
    return best


def _contenders(
    scored: Mapping[str, float],
    confirmations: Mapping[str, Sequence[float | None]] | None,
    minimize: bool,
) -> list[Candidate]:
    """The trials competing for the winner, best mean first: the confirmed ones (a trial whose
    every confirmation run failed is out), or, without confirmation, every usable trial."""
    if confirmations is None:
        found = [Candidate(k, Runs((v,)), False, v) for k, v in scored.items()]
    else:
        found = [
            Candidate(str(k), runs(values), True, scored.get(str(k)))
            for k, values in confirmations.items()
        ]
        found = [c for c in found if c.runs.n]
    return _rank(found, minimize)


def _rank(candidates: list[Candidate], minimize: bool) -> list[Candidate]:
    """Best mean first; among equal means the guess first (a tie is no gain), then the better
    tuning score, then the given order."""
    sign = 1.0 if minimize else -1.0

    def key(item: tuple[int, Candidate]) -> tuple:
        i, c = item
        tuning = c.tuning_value if c.tuning_value is not None else math.inf * sign
        return (sign * c.runs.mean, c.id != GUESS, sign * tuning, i)

    return [c for _, c in sorted(enumerate(candidates), key=key)]


def _test(
    contenders: list[Candidate], guess: Runs, minimize: bool, alpha: float
) -> NoiseTest | None:
    """The pooled one-sided t-test of the best contender against the guess; None when no
    configuration ran twice (the noise is unknown)."""
    groups = [guess, *(c.runs for c in contenders if c.confirmed)]
    df = sum(g.n - 1 for g in groups if g.n >= 2)
    if df == 0:
        return None
    pooled = math.sqrt(math.fsum((g.n - 1) * g.sd**2 for g in groups if g.n >= 2) / df)
    top = contenders[0].runs
    gain = (guess.mean - top.mean) if minimize else (top.mean - guess.mean)
    se = pooled * math.sqrt(1 / top.n + 1 / guess.n)
    if se > 0:
        t = gain / se
    else:
        t = math.inf if gain > 0 else -math.inf if gain < 0 else 0.0
    return NoiseTest(t, df, t_sf(t, df), alpha / len(contenders), pooled)


def _winner(
    contenders: list[Candidate],
    guess: Runs | None,
    test: NoiseTest | None,
    minimize: bool,
    best: str | None,
) -> str | None:
    if guess is None:  # nothing to beat: the best confirmed trial, else the best tuning score
        return contenders[0].id if contenders else best
    if not contenders or not _better(contenders[0].runs.mean, guess.mean, minimize):
        return GUESS
    if test is not None and not test.beyond:
        return GUESS
    return contenders[0].id


def _comparer(guess: Runs | None, noise: float | None, minimize: bool):
    def compare(value: float) -> Comparison | None:
        if guess is None:
            return None
        gain = (guess.mean - value) if minimize else (value - guess.mean)
        relative = 100.0 * gain / abs(guess.mean) if guess.mean else None
        in_noise = gain / noise if noise else None
        return Comparison(value, guess.mean, gain, relative, in_noise)

    return compare


# -- words ----------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    """Four significant digits, trailing zeros kept (0.2100 next to 0.2078 reads as a score)."""
    return "?" if value is None else f"{value:#.4g}".rstrip(".")


def _guess(v: Verdict) -> str:
    noise = f" +- {v.noise:.2g}" if v.noise is not None else " (noise unknown)"
    return f"{_fmt(v.guess.mean)}{noise}" if v.guess else "?"


def _gain(c: Comparison) -> str:
    """'3.1% better, 2.4 x noise' / '0.5% worse, 0.4 x noise'."""
    word = "better" if c.improvement > 0 else "worse" if c.improvement < 0 else "equal"
    parts = [f"{abs(c.relative_pct):.1f}% {word}" if c.relative_pct is not None else word]
    if c.in_noise is not None:
        parts.append(f"{c.in_noise:.1f} x noise")
    return ", ".join(parts)


def _trial_runs(c: Candidate) -> str:
    if not c.confirmed:
        return f"{_fmt(c.runs.mean)}, its tuning score, not confirmed at fresh seeds"
    return f"confirmed mean {_fmt(c.runs.mean)} over {c.runs.n} fresh seed{'s' * (c.runs.n > 1)}"


def _with_words(v: Verdict, confirming: bool) -> Verdict:
    return replace(v, words=_words(v, confirming))


def _words(v: Verdict, confirming: bool) -> str:
    trials = [c for c in v.candidates if c.id != GUESS]
    top = trials[0] if trials else None
    if v.winner is None:
        return "no usable trial and no usable baseline run: no winner"
    if v.guess is None:
        described = _trial_runs(top) if top else f"{_fmt(v.best_value)}, not confirmed"
        return (
            f"trial {v.winner} is best ({described}); no baseline ran, so nothing says whether "
            f"it beat the trainer's defaults; finalize trains trial {v.winner}"
        )
    defaults = "the guess wins; finalize trains the trainer's defaults"
    if top is None:
        why = "no usable trial"
        if v.best_trial is not None and confirming:
            why = "no trial could be confirmed: every confirmation run failed"
        return f"{why} (guess {_guess(v)}): {defaults}"
    if v.winner == GUESS:
        return (
            f"no trial beat the guess beyond noise (best: trial {top.id}, {_trial_runs(top)}, "
            f"vs guess {_guess(v)}): {defaults}"
        )
    gain = v.winner_vs_guess
    if v.test is None:
        return (
            f"trial {v.winner} is best ({_trial_runs(top)}; guess {_fmt(v.guess.mean)}, "
            f"{_gain(gain)}) but no configuration ran twice, so the noise is unknown and "
            f"whether it beat the guess beyond noise cannot be told; finalize trains trial "
            f"{v.winner}"
        )
    by = f"{gain.relative_pct:.1f}%" if gain.relative_pct is not None else _fmt(gain.improvement)
    units = f"{gain.in_noise:.1f} x noise; " if gain.in_noise is not None else ""
    return (
        f"trial {v.winner} beat the guess by {by} ({units}{_trial_runs(top)} vs guess "
        f"{_guess(v)}; p={v.test.p_value:.2g} < {v.test.level:.2g}): trial {v.winner} wins; "
        f"finalize trains it"
    )


# -- Student's t ----------------------------------------------------------------------------------


def t_sf(t: float, df: float) -> float:
    """P(T >= t) for Student's t with `df` degrees of freedom (no scipy: the regularized
    incomplete beta function by its continued fraction)."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def _betainc(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function (Numerical Recipes' betai)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float, steps: int = 300, eps: float = 1e-15) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, steps + 1):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h
