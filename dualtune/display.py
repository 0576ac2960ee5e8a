"""What the person running a study sees: a live table on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO

from backends.base import (
    RUNNING,
    Event,
    ExecutionEnded,
    ExecutionStarted,
    Measured,
    StudyEnded,
    StudyStarted,
    StudyVerdict,
    TrialEnded,
    TrialStarted,
    best_of,
    better,
)


@dataclass
class _Row:
    number: int
    params: dict[str, Any]
    epoch: int = 0
    latest: float | None = None
    best: float | None = None  # its best measurement so far
    status: str = RUNNING
    reason: str = ""
    final: float | None = None  # by the study's measurement selection, once it ended
    values: list[float] = field(default_factory=list)


def number(value: Any) -> str:
    """A value for a table: floats at 4 significant digits (0.0002965488058019691 -> 0.0002965,
    0.45248 -> 0.4525), anything else as it is. Shared by the reports."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def counted(n: int, noun: str) -> str:
    """`1 trial`, `2 trials`, `0 trials`: a count with its noun in the right number."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def params_text(params: dict[str, Any]) -> str:
    """`name=value ...`, numbers as `number` writes them."""
    return " ".join(f"{k}={number(v)}" for k, v in params.items())


def _execution_text(e: ExecutionStarted) -> str:
    seed = f" at seed {e.seed}" if e.seed is not None else ""
    if e.role == "baseline":
        return f"the guess (the trainer's defaults){seed}"
    return f"re-run of trial {e.trial_id}{seed} {params_text(e.params)}"


def sig(value: float | None) -> str:
    """A metric value for a table: 4 significant digits, '-' for none."""
    return "-" if value is None else number(float(value))


class Display:
    """A recorder for people. `live` picks the rich table; otherwise one line per event."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live_mode = self.stream.isatty() if live is None else live
        self.rows: dict[str, _Row] = {}
        self.executions: dict[str, _Row] = {}  # the baseline and confirmation runs
        self.verdict: StudyVerdict | None = None
        self.tag, self.minimize = "val_rmse", True
        self.lock = threading.Lock()
        self.live = None

    def handle(self, event: Event) -> None:
        with self.lock:
            self._apply(event)
            if self.live is not None:
                self.live.update(self._table())

    def _apply(self, event: Event) -> None:
        if isinstance(event, StudyStarted):
            self.tag, self.minimize = event.space.metric.tag, event.space.metric.minimize
            self._line(f"study {event.study}: backend {event.backend}, algorithm {event.algorithm}")
            if self.live_mode:
                from rich.live import Live

                self.live = Live(self._table(), refresh_per_second=4, transient=False)
                self.live.start()
        elif isinstance(event, TrialStarted):
            self.rows[event.trial_id] = _Row(event.number, event.params)
            self._line(f"trial {event.trial_id} started {params_text(event.params)}")
        elif isinstance(event, Measured):
            self._measured(event)
        elif isinstance(event, TrialEnded):
            self._ended(event)
        elif isinstance(event, ExecutionStarted):
            self.executions[event.execution_id] = _Row(event.number, event.params)
            what = _execution_text(event)
            self._line(f"{event.execution_id} started: {what}")
        elif isinstance(event, ExecutionEnded):
            row = self.executions.get(event.execution_id)
            if row is not None:
                row.status, row.reason, row.final = event.status, event.reason, event.final_value
            reason = f" ({event.reason.splitlines()[-1][:200]})" if event.reason else ""
            self._line(
                f"{event.execution_id} {event.status} {self.tag}={sig(event.final_value)}{reason}"
            )
        elif isinstance(event, StudyVerdict):
            self.verdict = event
        elif isinstance(event, StudyEnded):
            self._study_ended(event)

    def _measured(self, e: Measured) -> None:
        row = self.rows.get(e.trial_id) or self.executions.get(e.trial_id)
        if row is None:
            return
        if e.execution is not None:  # one execution of several: the trial's value is the mean
            name = f"trial {e.trial_id} execution {e.execution}"
            self._line(f"{name} epoch {e.step} {self.tag} {sig(e.value)}")
            return
        row.epoch, row.latest = e.step, e.value
        if better(e.value, row.best, self.minimize):
            row.best = e.value
        what = "trial " if e.trial_id in self.rows else ""
        self._line(f"{what}{e.trial_id} epoch {e.step} {self.tag} {sig(e.value)}")

    def _ended(self, e: TrialEnded) -> None:
        row = self.rows.get(e.trial_id)
        if row is not None:
            row.status, row.reason, row.final = e.status, e.reason, e.final_value
        reason = f" ({e.reason.splitlines()[-1][:200]})" if e.reason else ""
        self._line(f"trial {e.trial_id} {e.status} {self.tag}={sig(e.final_value)}{reason}")

    def _study_ended(self, e: StudyEnded) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.stop()
            self.live = None
        best = (
            f"best trial {e.best_trial_id} {self.tag}={sig(e.best_value)}"
            if e.best_trial_id is not None
            else "no usable trial"
        )
        print(
            f"study {e.study} {e.status}: {best}" + (f"; {e.reason}" if e.reason else ""),
            file=self.stream,
            flush=True,
        )
        if self.verdict is not None:  # the last lines: the best against the guess, the verdict
            print(f"{self.verdict.best_line}\nverdict: {self.verdict.words}", file=self.stream)

    def _line(self, text: str) -> None:
        if not self.live_mode:
            print(text, file=self.stream, flush=True)

    def _table(self):
        from rich.table import Table

        table = Table(title=f"trials (best {self.tag} so far: {sig(self._best())})")
        for col in (
            "trial",
            "parameters",
            "epoch",
            f"latest {self.tag}",
            f"best {self.tag}",
            "status",
        ):
            table.add_column(col)
        for trial_id, row in [*self.rows.items(), *self.executions.items()]:
            table.add_row(
                trial_id,
                params_text(row.params) or "(the trainer's defaults)",
                str(row.epoch),
                sig(row.latest),
                sig(row.best),
                row.status,
            )
        return table

    def _best(self) -> float | None:
        """The best final of the ended trials, by the rule the study's best is chosen by
        (trialkit.status): a running trial's best epoch is no final yet."""
        rows = ((trial_id, r.status, r.final) for trial_id, r in self.rows.items())
        best = best_of(rows, self.minimize)
        return best[1] if best else None
