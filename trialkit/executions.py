"""Running one configuration several times: the seeds of repeated runs, and how a trial's N
executions combine into its curve and score (Keras Tuner's executions_per_trial).

Shared by both backends (and the emulator) so that a trial run N times scores the same
wherever it ran. Each execution is one run of the trainer at its own training seed; every
execution's curve is kept (and recorded); the trial's curve and score are derived here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from trialkit.hypertune_file import select_final

SEED_LIMIT = 2**31 - 1  # seeds stay below int32's max: numpy, TensorFlow and Keras all take it


def run_seeds(key: str, count: int, base: int = 0) -> tuple[int, ...]:
    """`count` distinct training seeds for the repeated runs named `key` (e.g. "baseline",
    "confirm/7", "trial/3/execution"), derived from the study's seed `base` by SHA-256: the same
    on every machine, backend and resume, different for every key and every repeat, each in
    [1, 2**31 - 1)."""
    if count < 0:
        raise ValueError(f"count must be >= 0 (got {count})")
    seeds: list[int] = []
    index = 0
    while len(seeds) < count:  # a repeat of a seed (about 1 in 2**31) takes the next index
        digest = hashlib.sha256(f"{int(base)}/{key}/{index}".encode()).digest()
        seed = 1 + int.from_bytes(digest[:8], "big") % (SEED_LIMIT - 1)
        if seed not in seeds:
            seeds.append(seed)
        index += 1
    return tuple(seeds)


def study_base(study: str) -> int:
    """A study's own base for run_seeds, from its name: stable across resume, attach and
    backends, different between studies, so that two studies do not re-use each other's
    baseline and confirmation runs (their noise would then be measured once, not per study)."""
    return int.from_bytes(hashlib.sha256(f"study/{study}".encode()).digest()[:4], "big")


@dataclass(frozen=True)
class Combined:
    """A trial's N executions as one trial.

    curve: (step, mean) for every step any execution reported, the mean over the executions
    with a finite value at that step (NaN when none had one); counts: how many executions each
    step's mean is over. execution_scores: each execution's score by the space's measurement
    selection (None: it reported no finite value). score: the mean of the execution scores that
    exist (Keras Tuner's rule: each execution's best epoch, averaged), None when none exists.
    curve_score: the same selection applied to the mean curve, for a backend that can only
    report a curve (Vertex picks the measurement itself). When every execution reports every
    step it equals `score` for selection "last" and is never better than it for "best" (the
    mean of the minima is at most the minimum of the means)."""

    curve: tuple[tuple[int, float], ...]
    counts: tuple[int, ...]
    execution_scores: tuple[float | None, ...]
    score: float | None
    curve_score: float | None

    @property
    def executions(self) -> int:
        return len(self.execution_scores)

    @property
    def scored(self) -> int:
        """How many executions have a score (the rest failed before a finite measurement)."""
        return sum(s is not None for s in self.execution_scores)


Curve = Mapping[int, float] | Iterable[tuple[int, float]]


def combine_executions(
    curves: Sequence[Curve], minimize: bool, selection: str = "best"
) -> Combined:
    """Combine N executions' per-step curves ({step: value} or (step, value) pairs; a later
    value for one step replaces an earlier one, as a resumed run re-reports it)."""
    if selection not in ("best", "last"):
        raise ValueError(f"selection must be best or last (got {selection!r})")
    steps_of = [dict(c.items() if isinstance(c, Mapping) else c) for c in curves]
    scores = tuple(
        select_final([float(v) for _, v in sorted(s.items())], minimize, selection)
        for s in steps_of
    )
    curve, counts = [], []
    for step in sorted({step for s in steps_of for step in s}):
        finite = [float(s[step]) for s in steps_of if step in s and math.isfinite(s[step])]
        curve.append((int(step), math.fsum(finite) / len(finite) if finite else math.nan))
        counts.append(len(finite))
    present = [s for s in scores if s is not None]
    return Combined(
        curve=tuple(curve),
        counts=tuple(counts),
        execution_scores=scores,
        score=math.fsum(present) / len(present) if present else None,
        curve_score=select_final([v for _, v in curve], minimize, selection),
    )
