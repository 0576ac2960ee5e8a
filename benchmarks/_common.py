"""Shared by the study benchmarks: the flights space, one local study run, what its events say.

Benchmarks run from the repository root (`.venv/bin/python benchmarks/NAME.py`); they print,
they never assert timings (a shared machine is too noisy), and compare runs made in the same
process only.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FLIGHTS = REPO / "search_spaces" / "flights.yaml"


def flights_space(**changes: Any):
    """search_spaces/flights.yaml with `changes` laid over it (budget, algorithm...)."""
    from search_spaces.loader import load_space

    return dataclasses.replace(load_space(FLIGHTS), **changes)


def machine_line() -> str:
    """Date, CPUs, load average, library versions: the context every result needs."""
    import keras
    import keras_tuner
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    return (
        f"{datetime.date.today()}: {os.cpu_count()} CPUs, {gpus} GPU(s), load average "
        f"{load_average()}; tf {tf.__version__}, keras {keras.__version__}, "
        f"keras-tuner {keras_tuner.__version__}"
    )


def load_average_line() -> str:
    """Date, CPUs and load average, without the TensorFlow versions machine_line imports."""
    return f"{datetime.date.today()}: {os.cpu_count()} CPUs, load average {load_average()}"


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


@dataclass
class TrialRecord:
    """One trial as its events told it."""

    trial_id: str
    params: dict[str, Any]
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each epoch was reported (epoch s)
    status: str = ""
    final: float | None = None
    reason: str = ""

    def training_s(self) -> float:
        """Time spent training, by the steady-state epoch: the epochs run times the mean gap
        between consecutive epoch reports. The first epoch's extra (tracing the train and test
        functions, filling the eval cache) is thus NOT training: it counts as overhead."""
        if len(self.times) < 2:
            return 0.0
        gap = (self.times[-1] - self.times[0]) / (len(self.times) - 1)
        return gap * len(self.times)

    def epoch_gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]


@dataclass
class StudyResult:
    """What a benchmark needs from one study: wall time and each trial's record."""

    label: str
    wall_s: float
    trials: list[TrialRecord]
    status: str = ""
    best: float | None = None

    @property
    def epochs(self) -> int:
        return sum(len(t.steps) for t in self.trials)

    def training_s(self) -> float:
        return sum(t.training_s() for t in self.trials)

    def median_epoch_s(self) -> float:
        gaps = [g for t in self.trials for g in t.epoch_gaps()]
        return statistics.median(gaps) if gaps else float("nan")


def run_local_study(
    label: str, space: Any, workdir: Path, extra_args: tuple[str, ...], **options: Any
) -> StudyResult:
    """Run `space` on the local backend (options: LocalSettings fields) and record its events."""
    from backends.base import Measured, StudyRequest, TrialEnded, TrialStarted
    from backends.local.backend import LocalBackend
    from backends.local.settings import LocalSettings

    settings = LocalSettings(**options)
    request = StudyRequest(
        study=label.replace(" ", "-"), space=space, workdir=workdir, extra_args=extra_args
    )
    trials: dict[str, TrialRecord] = {}

    def sink(event: Any) -> None:
        if isinstance(event, TrialStarted):
            trials[event.trial_id] = TrialRecord(event.trial_id, dict(event.params))
        elif isinstance(event, Measured):
            record = trials[event.trial_id]
            record.steps.append(event.step)
            record.values.append(event.value)
            record.times.append(event.timestamp)
        elif isinstance(event, TrialEnded):
            record = trials[event.trial_id]
            record.status, record.final, record.reason = (
                event.status,
                event.final_value,
                event.reason,
            )

    start = time.perf_counter()
    ended = LocalBackend(settings).run(request, sink)
    wall = time.perf_counter() - start
    return StudyResult(label, wall, list(trials.values()), ended.status, ended.best_value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain right-aligned text table (first column left-aligned)."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        first = row[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join([first, *rest]))
    return "\n".join(lines)
