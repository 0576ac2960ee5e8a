"""Trial statuses and the one rule for a usable trial and the best one, shared by both backends,
the emulator and every recorder (Vertex INFEASIBLE maps to FAILED).

`TrialStatus` is a str enum: a status compares equal to its name ("COMPLETED") and prints as it,
so records written before it (MLflow tags, study.json) read back unchanged.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from typing import TypeVar

K = TypeVar("K")


class TrialStatus(str, enum.Enum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"  # stopped early as unproductive, or by the user

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def terminal(self) -> bool:
        return self is not TrialStatus.RUNNING


RUNNING = TrialStatus.RUNNING
COMPLETED = TrialStatus.COMPLETED
FAILED = TrialStatus.FAILED
STOPPED = TrialStatus.STOPPED
TERMINAL = (COMPLETED, FAILED, STOPPED)


def usable(status: str | None, final: float | None) -> bool:
    """A trial counts toward the best when it ended COMPLETED or STOPPED (stopped early, its
    best value so far stands) with a finite final value. FAILED and RUNNING never count."""
    return status in (COMPLETED, STOPPED) and final is not None and math.isfinite(final)


def better(value: float, than: float | None, minimize: bool) -> bool:
    """Is `value` strictly better than `than` (None: nothing yet) for this goal?"""
    return than is None or (value < than if minimize else value > than)


def ranked(
    trials: Iterable[tuple[K, str | None, float | None]], minimize: bool
) -> list[tuple[K, float]]:
    """(key, final) of every usable trial among (key, status, final) triples, best first;
    equal values keep their given order."""
    found = [(key, float(final)) for key, status, final in trials if usable(status, final)]  # type: ignore[arg-type]
    return sorted(found, key=lambda item: item[1] if minimize else -item[1])


def best_of(
    trials: Iterable[tuple[K, str | None, float | None]], minimize: bool
) -> tuple[K, float] | None:
    """(key, final) of the best usable trial among (key, status, final) triples; the first of
    equal values wins; None when no trial is usable."""
    found = ranked(trials, minimize)
    return found[0] if found else None
