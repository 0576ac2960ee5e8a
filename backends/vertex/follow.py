"""Turn successive snapshots of a HyperparameterTuningJob into trial events, each exactly once.

Vertex has no event stream: a client GETs the job and sees every trial's state, parameters and
measurements so far. JobFollower remembers which trials it announced, which (trial, step) points
it emitted and which trials it ended, so polling any number of times, or re-attaching from a
fresh process, never emits an event twice within one follower; the MLflow recorder dedups across
processes. Pure: it reads proto-plus messages and calls the sink, no network.

Statuses follow the local backend's: a trial that measured NaN (or another non-finite value)
ends FAILED saying so, whatever Vertex made of it; a trial Vertex stopped early (seen in state
STOPPING, then SUCCEEDED: the Trial message has no "stopped early" field) ends STOPPED. A trial
that went from running to SUCCEEDED between two polls cannot be told from a completed one.

A trial whose parameters lie outside the search space (a guard: Vertex's values come from
Vizier, which keeps to the space) is announced and at once ended FAILED with the reason, and its
measurements are ignored, as the local backend refuses such a trial before it starts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backends.base import (
    COMPLETED,
    FAILED,
    STOPPED,
    Measured,
    Sink,
    StudyEnded,
    TrialEnded,
    TrialStarted,
    TrialStatus,
    best_of,
)
from search_spaces.membership import OutOfSpace, check
from search_spaces.model import SearchSpace
from trialkit.executions import run_seeds
from trialkit.hypertune_file import select_final

log = logging.getLogger(__name__)

# aiplatform_v1 enum numbers (JobState, Trial.State), compared as ints so this module needs no
# aiplatform import.
JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLING, JOB_CANCELLED = 4, 5, 6, 7
JOB_TERMINAL = (JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED)
TRIAL_STOPPING, TRIAL_SUCCEEDED, TRIAL_INFEASIBLE = 3, 4, 5
STOPPED_EARLY = "stopped early: unproductive by Vertex's automated stopping rule"


@dataclass
class JobFollower:
    """Emits TrialStarted, Measured and TrialEnded for what a job snapshot shows that is new."""

    space: SearchSpace
    sink: Sink
    base_output_dir: str = ""
    started: dict[str, int] = field(default_factory=dict)  # trial id -> number
    steps: dict[str, set[int]] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)  # for a stopped trial's final
    ended: dict[str, tuple[TrialStatus, float | None]] = field(default_factory=dict)
    interrupted: str = ""  # why, once we cancelled the job: trials ending now were stopped
    refused: set[str] = field(default_factory=set)  # trials with values outside the space
    stopping: set[str] = field(default_factory=set)  # trials seen STOPPING (stopped early)
    non_finite: dict[str, str] = field(default_factory=dict)  # trial id -> "tag was nan at..."
    # executions_per_trial > 1: a trial's output directory -> each execution's curve (what
    # trialkit.repeat wrote there), emitted as that execution's points when the trial ends
    execution_curves: Callable[[str], list[dict[int, float]]] | None = None

    def update(self, job: Any) -> None:
        for trial in job.trials:
            self._trial(trial)

    def _trial(self, trial: Any) -> None:
        trial_id = str(trial.id)
        if trial_id not in self.started:
            self._start(trial, trial_id)
        if trial_id in self.refused:
            return
        self._measure(trial, trial_id)
        if int(trial.state) == TRIAL_STOPPING and not self.interrupted:
            self.stopping.add(trial_id)
        if trial_id not in self.ended and int(trial.state) in (TRIAL_SUCCEEDED, TRIAL_INFEASIBLE):
            self._end(trial, trial_id)

    def _start(self, trial: Any, trial_id: str) -> None:
        number = int(trial_id) if trial_id.isdigit() else len(self.started) + 1
        self.started[trial_id] = number
        self.steps[trial_id] = set()
        self.values[trial_id] = []
        raw = {p.parameter_id: p.value for p in trial.parameters}
        params, problem = read_params(self.space, raw)
        base = self.base_output_dir.rstrip("/")
        directory = f"{base}/{trial_id}" if base else None
        n = self.space.trust.executions_per_trial
        seeds = run_seeds(f"trial/{trial_id}", n) if n > 1 and self.space.trainer.seed_flag else ()
        self.sink(
            TrialStarted(
                trial_id,
                number,
                params,
                directory=directory,
                vertex_trial_id=trial_id,
                executions=n if n > 1 else None,
                execution_seeds=seeds,
            )
        )
        if problem:
            self.refused.add(trial_id)
            self.ended[trial_id] = (FAILED, None)
            reason = f"ignored: Vertex sent parameters that lie {problem}"
            self.sink(TrialEnded(trial_id, FAILED, None, reason))

    def _measure(self, trial: Any, trial_id: str) -> None:
        start = _seconds(trial, "start_time")
        for measurement in sorted(trial.measurements, key=lambda m: m.step_count):
            step = int(measurement.step_count)
            value = self._value(measurement)
            if value is None or step in self.steps[trial_id]:
                continue
            self.steps[trial_id].add(step)
            self.values[trial_id].append(value)
            if not math.isfinite(value):
                tag = self.space.metric.tag
                self.non_finite.setdefault(trial_id, f"{tag} was {value} at epoch {step}")
            elapsed = measurement.elapsed_duration
            stamp = start + elapsed.total_seconds() if start and elapsed else 0.0
            self.sink(Measured(trial_id, step, value, stamp))

    def _end(self, trial: Any, trial_id: str) -> None:
        final = self._value(trial.final_measurement) if trial.final_measurement else None
        succeeded = int(trial.state) == TRIAL_SUCCEEDED and final is not None
        if trial_id in self.non_finite:
            status, reason, final = FAILED, self.non_finite[trial_id], None
        elif succeeded and trial_id in self.stopping:
            status, reason = STOPPED, STOPPED_EARLY
        elif succeeded:
            status, reason = COMPLETED, ""
        elif self.interrupted:
            status, reason, final = STOPPED, self.interrupted, self._so_far(trial_id)
        else:
            status = FAILED
            reason = trial.infeasible_reason or f"the trial reported no {self.space.metric.tag}"
        self.ended[trial_id] = (status, final)
        self._emit_executions(trial_id)
        self.sink(TrialEnded(trial_id, status, final, reason))

    def _emit_executions(self, trial_id: str) -> None:
        """Each execution's curve of a trial run several times (trialkit.repeat's
        executions.json in its output directory), as that execution's points; nothing (with a
        line) where it cannot be read: the trial's own curve is Vertex's."""
        base = self.base_output_dir.rstrip("/")
        if self.space.trust.executions_per_trial <= 1 or not self.execution_curves or not base:
            return
        try:
            curves = self.execution_curves(f"{base}/{trial_id}")
        except Exception as err:  # noqa: BLE001 - a missing file must not end the follow
            log.warning("trial %s: its executions' curves could not be read: %s", trial_id, err)
            return
        for k, curve in enumerate(curves, start=1):
            for step, value in sorted(curve.items()):
                self.sink(Measured(trial_id, step, value, execution=k))

    def stop_unfinished(self, reason: str) -> None:
        """End every announced trial the job never ended (the job was cancelled under it)."""
        for trial_id in self.started:
            if trial_id not in self.ended:
                final = self._so_far(trial_id)
                self.ended[trial_id] = (STOPPED, final)
                self.sink(TrialEnded(trial_id, STOPPED, final, reason))

    def _so_far(self, trial_id: str) -> float | None:
        """A stopped trial's final value from what it measured, as the local backend does."""
        metric = self.space.metric
        return select_final(
            self.values[trial_id], metric.minimize, self.space.measurement_selection
        )

    def _value(self, measurement: Any) -> float | None:
        for metric in measurement.metrics:
            if metric.metric_id == self.space.metric.tag:
                return float(metric.value)
        return None

    def best(self) -> tuple[str | None, float | None]:
        """(trial id, final) of the best ended trial by trialkit.status's rule; (None, None)."""
        ended = ((trial_id, status, final) for trial_id, (status, final) in self.ended.items())
        best = best_of(ended, self.space.metric.minimize)
        return best if best is not None else (None, None)

    def study_ended(self, study: str, job: Any) -> StudyEnded:
        """The StudyEnded for a job in a terminal state (or cancelled by us)."""
        best_id, best_value = self.best()
        state = int(job.state)
        if self.interrupted:
            status, reason = STOPPED, self.interrupted
        elif state == JOB_SUCCEEDED:
            status, reason = COMPLETED, ""
        else:
            word = "was cancelled" if state == JOB_CANCELLED else "failed"
            message = job.error.message.strip() if job.error and job.error.message else ""
            status, reason = FAILED, f"the Vertex job {word}" + (f": {message}" if message else "")
        return StudyEnded(study, status, best_id, best_value, reason)


def read_params(space: SearchSpace, raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A Vertex trial's parameters cast to their declared types (Vertex sends 9.0 for 9 and
    "true" for True), and why they lie outside `space` ('' when they do not)."""
    known = {p.name: p for p in space.parameters}
    values: dict[str, Any] = {}
    for name, value in raw.items():
        parameter = known.get(name)
        try:
            values[name] = parameter.cast(value) if parameter else value
        except (TypeError, ValueError):
            kind = {int: "an integer", float: "a number"}.get(parameter.python_type(), "a string")
            problem = f"outside the search space of {space.name!r}: {name}: {value!r} is not {kind}"
            return {k: v for k, v in raw.items() if k in known}, problem
    params = {k: v for k, v in values.items() if k in known}
    try:
        check(space, values)
    except OutOfSpace as err:
        return params, str(err)
    return params, ""


def _seconds(message: Any, name: str) -> float:
    value = getattr(message, name, None)
    try:
        return value.timestamp() if value else 0.0
    except (AttributeError, OverflowError, ValueError):
        return 0.0
