"""The local backend: a Keras Tuner oracle suggests, each trial runs as its own process.

One loop, one thread (`_LocalRun`, one call of LocalBackend.run): fill free slots with new
trials, stream every trial's new measurements to the oracle and the sink, end trials whose
process exited. How a trial process ended becomes its status in one place (`_finish`), as in
Keras Tuner's _try_run_and_update_trial; the study's best is trialkit.status.best_of.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import (
    COMPLETED,
    FAILED,
    STOPPED,
    Backend,
    Execution,
    ExecutionResult,
    FinalizeRequest,
    FinalizeResult,
    HyperbandRound,
    Measured,
    Sink,
    StudyEnded,
    StudyRequest,
    StudyStarted,
    TrialEnded,
    TrialStarted,
    TrialStatus,
    best_of,
)
from backends.local.in_space import admit, recorded, suggested
from backends.local.oracles import build_oracle, check_algorithm_available, split_values
from backends.local.process import (
    TrialCommand,
    TrialProcess,
    TrialServer,
    preload_modules,
    trial_command,
)
from backends.local.settings import LocalSettings
from backends.trainer_check import base_env, python_argv
from search_spaces.membership import OutOfSpace
from trialkit.early_stopping import EarlyStopper
from trialkit.errors import UserError, interruption
from trialkit.executions import combine_executions, run_seeds
from trialkit.hypertune_file import read_reports, select_final

log = logging.getLogger(__name__)

POLL_S = 0.05  # cheap (a stat and a small read per trial); a slot is refilled sooner
FINISHED_MARK = "finished"  # in an execution's directory once it ended well: resume keeps it


@dataclass
class Slot:
    """A place for one running trial, pinned to a GPU when the machine has any."""

    index: int
    gpu: str | None
    trial: Any = None  # the keras_tuner Trial
    number: int = 0
    proc: TrialProcess | None = None
    values: list[float] = field(default_factory=list)
    # executions_per_trial > 1: the trial's runs go one after another in this slot
    run: Any = None  # what starts the next execution: (params, hyperband)
    seeds: tuple[int, ...] = ()
    execution: int = 0  # the running execution, 1-based (0: the trial runs once)
    curves: list[dict[int, float]] = field(default_factory=list)  # the finished executions'
    current: dict[int, float] = field(default_factory=dict)  # the running execution's points
    mean_sent: set[int] = field(default_factory=set)  # steps of the mean curve emitted

    @property
    def tuner_id(self) -> str:
        return f"slot-{self.index}"


def visible_gpus() -> list[str]:
    """GPU ids trials may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    if preset is not None:
        return [g for g in preset.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


class LocalBackend(Backend):
    name = "local"

    def __init__(self, settings: LocalSettings | None = None) -> None:
        self.settings = settings or LocalSettings()

    def preflight(self, request: StudyRequest) -> None:
        """The interpreter runs, the script exists, the trainer takes every parameter."""
        from backends.trainer_check import check_parameters, check_python, flags_here

        space, python = request.space, self.settings.python
        check_algorithm_available(space.algorithm)  # vizier needs its extra
        check_python(python)
        trainer = space.trainer
        if trainer.script and not Path(trainer.script).is_file():
            raise UserError(
                f"{space.source}: trainer.script: {trainer.script} does not exist; "
                f"fix the path (relative to the space file) or use --trainer"
            )
        if not self.settings.check_trainer:
            return
        flags = flags_here(space, request.env, python)
        check_parameters(space, flags, trainer.module or trainer.script, request.extra_args)

    def record(self) -> dict[str, Any]:
        return self.settings.record()

    def run(self, request: StudyRequest, sink: Sink) -> StudyEnded:
        return _LocalRun(self.settings, request, sink).run()

    def finalize(self, request: FinalizeRequest, sink: Sink) -> FinalizeResult:
        from backends.local.finalize import run_finalize

        return run_finalize(request, sink, self.settings.python)

    def execute(self, execution: Execution, sink: Sink) -> ExecutionResult:
        return self.execute_all([execution], sink)[0]

    def execute_all(
        self, executions: list[Execution], sink: Sink, parallel: int = 1
    ) -> list[ExecutionResult]:
        """Each execution its own trainer process, `parallel` at a time (execute.py)."""
        from backends.local.execute import run_executions

        return run_executions(executions, sink, self.settings.python, parallel)


class _LocalRun:
    """The state of one local study run (one call of LocalBackend.run): the oracle, the slots
    and their trial processes, the trials ended so far."""

    def __init__(self, settings: LocalSettings, request: StudyRequest, sink: Sink) -> None:
        self.req = request
        self.space = request.space
        self.sink = sink
        self.algorithm = self.space.algorithm
        self.budget = self.space.budget
        self.seed = settings.seed
        self.python = settings.python
        self.hang_timeout_s = settings.hang_timeout_s
        self.stopper = EarlyStopper(self.space.early_stopping, self.space.metric.minimize)
        self.failed = 0
        self.ended: list[tuple[str, TrialStatus, float | None]] = []  # for the best
        self.exhausted = False
        self.base_env = base_env(self.req.env, self.space.trainer.module)
        self.prewarm = settings.prewarm
        self.server: TrialServer | None = None
        self.executions = self.space.trust.executions_per_trial

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> StudyEnded:
        self.req.workdir.mkdir(parents=True, exist_ok=True)
        gpus = visible_gpus()
        self.slots = [
            Slot(i, gpus[i % len(gpus)] if gpus else None)
            for i in range(self.budget.parallel_trials)
        ]
        try:
            # The trial server first: its imports overlap the orchestrator's own (the oracle).
            self._start_server()
            self.oracle = build_oracle(
                self.space, self.algorithm, self.budget.max_trials, self.seed, self.req.workdir
            )
            self.sink(
                StudyStarted(
                    self.req.study,
                    "local",
                    self.algorithm,
                    self.space,
                    workdir=str(self.req.workdir),
                    seed=self.seed,
                )
            )
            self._replay_record()
            try:
                reason = self._loop()
            except KeyboardInterrupt as exc:
                self._stop_all(interruption(exc), keep_for_resume=True)
                return self._end(STOPPED, interruption(exc))
        finally:
            if self.server is not None:
                self.server.close()
        return self._end(FAILED if reason else COMPLETED, reason)

    def _loop(self) -> str:
        while True:
            if self.failed > self.budget.max_failed_trials:
                self._stop_all("study stopped: too many failed trials", keep_for_resume=False)
                return (
                    f"{self.failed} trial{'s' if self.failed != 1 else ''} failed (more than "
                    f"--max-failed-trials "
                    f"{self.budget.max_failed_trials}); see the failure reasons above"
                )
            self._fill_slots()
            busy = False
            for slot in self.slots:
                if slot.proc is not None:
                    self._watch(slot)
                    busy = busy or slot.proc is not None
            if not busy and self.exhausted:
                return ""
            time.sleep(POLL_S)

    # -- starting trials ----------------------------------------------------------------------
    def _fill_slots(self) -> None:
        for slot in self.slots:
            if slot.proc is not None or self.exhausted:
                continue
            if len(self.oracle.trials) >= self.budget.max_trials and not self.oracle._retry_queue:
                self.exhausted = True
                return
            trial = self.oracle.create_trial(slot.tuner_id)
            if trial.status == "STOPPED":
                self.exhausted = True
                return
            if trial.status != "RUNNING":  # IDLE: Hyperband waits for a round to finish
                return
            self._start(slot, trial)

    def _start(self, slot: Slot, trial: Any) -> None:
        try:
            values, mapped = admit(self.oracle, trial, self.space)
        except OutOfSpace as err:
            self._refuse(trial, err)
            return
        _, tuner = split_values(trial.hyperparameters.values)
        params = self.space.cast_values(values)
        slot.trial, slot.number = trial, int(trial.trial_id) + 1
        hyperband = HyperbandRound.from_tuner(tuner)
        if self.executions > 1:
            self._start_executions(slot, params, hyperband, mapped)
            return
        known = self._curve(trial)  # a resumed trial's epochs before the interruption
        slot.values = list(known.values())
        command = self._command(trial.trial_id, params, hyperband)
        slot.proc = self._spawn(slot, command)
        slot.proc.tail.seen.update(known)
        started = TrialStarted(
            trial.trial_id,
            slot.number,
            params,
            pid=slot.proc.pid,
            gpu=slot.gpu or "",
            directory=str(command.directory),
            mapped_into_space=mapped,
            hyperband=hyperband,
        )
        self.sink(started)
        for step, value in known.items():  # what it measured before an interruption
            self.sink(Measured(trial.trial_id, step, value))
        log.info("trial %s started: %s", trial.trial_id, params)

    def _spawn(self, slot: Slot, command: TrialCommand) -> TrialProcess:
        if self.server is not None and not self.server.alive():
            # It died (a broken interpreter or preload): trials start cold from now on rather
            # than a server being respawned forever.
            log.warning("the trial server exited; starting trials cold from now on")
            self.server.close()
            self.server = None
        return TrialProcess.start(command, self.space.metric.tag, self._slot_env(slot), self.server)

    def _start_executions(
        self, slot: Slot, params: dict, hyperband: HyperbandRound | None, mapped: str
    ) -> None:
        """A trial run N times (executions_per_trial): one execution after another in its
        slot, each in trials/<id>/execution-K at its own seed. A resumed trial keeps the
        executions that finished (their `finished` mark) and continues the next one."""
        trial_id, n = slot.trial.trial_id, self.executions
        slot.run, slot.seeds, slot.mean_sent = (
            (params, hyperband),
            run_seeds(f"trial/{trial_id}", n),
            set(),
        )
        slot.curves = []
        for k in range(1, n + 1):
            if not (self._execution_dir(trial_id, k) / FINISHED_MARK).is_file():
                break
            slot.curves.append(self._execution_curve(trial_id, k))
        slot.execution = len(slot.curves) + 1
        slot.current = (
            self._execution_curve(trial_id, slot.execution) if slot.execution <= n else {}
        )
        if slot.execution <= n:
            slot.proc = self._spawn(slot, self._execution_command(slot))
            slot.proc.tail.seen.update(slot.current)
        self.sink(
            TrialStarted(
                trial_id,
                slot.number,
                params,
                pid=slot.proc.pid if slot.proc else None,
                gpu=slot.gpu or "",
                directory=str(self.req.workdir / "trials" / trial_id),
                mapped_into_space=mapped,
                hyperband=hyperband,
                executions=n,
                execution_seeds=slot.seeds if self.space.trainer.seed_flag else (),
            )
        )
        for k, curve in enumerate([*slot.curves, slot.current], start=1):
            for step, value in curve.items():  # what it measured before an interruption
                self.sink(Measured(trial_id, step, value, execution=k))
        log.info("trial %s started (%d executions): %s", trial_id, n, params)
        if slot.proc is None:  # every execution had finished: only its end was lost
            slot.execution, slot.current = n, slot.curves.pop()
            self._finish(slot, 0)

    def _execution_command(self, slot: Slot) -> TrialCommand:
        params, hyperband = slot.run
        k = slot.execution
        return self._command(slot.trial.trial_id, params, hyperband, k, slot.seeds[k - 1])

    def _next_execution(self, slot: Slot) -> None:
        """The running execution finished well: mark it (a resume keeps it), start the next."""
        trial_id = slot.trial.trial_id
        (self._execution_dir(trial_id, slot.execution) / FINISHED_MARK).write_text("0\n")
        slot.curves.append(slot.current)
        slot.execution, slot.current = slot.execution + 1, {}
        slot.proc = self._spawn(slot, self._execution_command(slot))
        log.info("trial %s: execution %d of %d", trial_id, slot.execution, self.executions)

    def _execution_dir(self, trial_id: str, k: int) -> Path:
        return self.req.workdir / "trials" / trial_id / f"execution-{k}"

    def _execution_curve(self, trial_id: str, k: int) -> dict[int, float]:
        metric_file = self._execution_dir(trial_id, k) / "hypertune" / "output.metrics"
        return {r.step: r.value for r in read_reports(metric_file, self.space.metric.tag)}

    def _refuse(self, trial: Any, err: OutOfSpace) -> None:
        """A suggestion outside the space ends FAILED before any process starts; the oracle is
        told like for any failed trial."""
        number = int(trial.trial_id) + 1
        self.sink(TrialStarted(trial.trial_id, number, suggested(trial, self.space)))
        self._record_end(trial, FAILED, None, f"not started: the suggested values lie {err}")

    def _command(
        self,
        trial_id: str,
        params: dict,
        hyperband: HyperbandRound | None,
        execution: int | None = None,
        seed: int | None = None,
    ) -> TrialCommand:
        """The trial's argv (tuning args, extra args, parameter flags, Hyperband's flags, then
        an execution's seed flag) and its directories: trials/<id>, or trials/<id>/execution-K
        for one of a trial's executions (each has its own AIP_* dirs and metric file)."""
        sub = (f"execution-{execution}",) if execution else ()
        directory = Path(self.req.workdir, "trials", trial_id, *sub)
        trainer = self.space.trainer
        argv = python_argv(self.python, trainer.module, trainer.script)
        argv += [*trainer.tuning_args, *self.req.extra_args, *self.space.flags(params)]
        if hyperband is not None:  # Hyperband's epoch budget, and its warm start
            argv += [f"--num_epochs={hyperband.epochs}"]
            argv += [f"--initial_epoch={hyperband.initial_epoch}"]
            if hyperband.parent:  # an execution continues the parent's same execution
                parent = Path(self.req.workdir, "trials", hyperband.parent, *sub)
                argv += [f"--warm_start_from={parent / 'checkpoints'}"]
        if seed is not None:
            argv += trainer.seed_args(seed)
        return trial_command(argv, directory, trial_id)

    def _start_server(self) -> None:
        """The process every trial is forked from, its heavy imports done (see TrialServer)."""
        if not self.prewarm:
            return
        trainer = self.space.trainer
        python = self.python or python_argv(None, "x", None)[0]
        preload = preload_modules(trainer.module, trainer.script)
        fixed = (*trainer.tuning_args, *self.req.extra_args)
        self.server = TrialServer(python, preload, self.base_env, trainer.module, fixed)

    # -- watching trials ----------------------------------------------------------------------
    def _watch(self, slot: Slot) -> None:
        proc = slot.proc
        self._take_reports(slot)
        if proc.stop_requested:
            proc.stop(proc.stop_requested)  # escalates to SIGKILL after the grace period
        elif self.hang_timeout_s and time.monotonic() - proc.last_progress > self.hang_timeout_s:
            proc.stop(f"hung: no new measurement for {self.hang_timeout_s:g} s; killed")
            proc.kill()
        code = proc.exit_code()
        if code is not None:
            self._take_reports(slot)  # the last epoch may land just before the exit
            if self._execution_done(slot, code):
                self._next_execution(slot)
            else:
                self._finish(slot, code)

    def _execution_done(self, slot: Slot, code: int) -> bool:
        """Whether an execution (not the trial's last) ended well, so the next one starts."""
        return (
            0 < slot.execution < self.executions
            and code == 0
            and not slot.proc.stop_requested
            and select_final(list(slot.current.values()), True) is not None
        )

    def _take_reports(self, slot: Slot) -> None:
        """Feed each new measurement to the oracle and the sink; judge NaN and early stopping."""
        proc, trial_id, tag = slot.proc, slot.trial.trial_id, self.space.metric.tag
        if slot.execution:
            self._take_execution_reports(slot)
            return
        for report in proc.poll_reports():
            slot.values.append(report.value)
            if math.isfinite(report.value) and self.space.measurement_selection == "best":
                self.oracle.update_trial(trial_id, {tag: report.value}, step=report.step)
            self.sink(Measured(trial_id, report.step, report.value, report.timestamp))
            if not math.isfinite(report.value):
                proc.stop(f"{tag} was {report.value} at epoch {report.step}")
            elif self.stopper.should_stop(trial_id, report.step, report.value):
                proc.stop("stopped early: unproductive by the early-stopping policy")

    def _take_execution_reports(self, slot: Slot) -> None:
        """One execution's new points: each as that execution's, NaN judged on it. While the
        last execution runs, the trial's mean curve grows with it: emitted, and judged by
        early stopping (earlier executions are never stopped early: there is no mean yet)."""
        proc, trial_id, tag = slot.proc, slot.trial.trial_id, self.space.metric.tag
        k, n = slot.execution, self.executions
        for report in proc.poll_reports():
            slot.current[report.step] = report.value
            self.sink(Measured(trial_id, report.step, report.value, report.timestamp, k))
            if not math.isfinite(report.value):
                proc.stop(f"{tag} was {report.value} at epoch {report.step} (execution {k} of {n})")
            elif k == n:
                mean = dict(self._combined(slot).curve).get(report.step, math.nan)
                if report.step not in slot.mean_sent and math.isfinite(mean):
                    slot.mean_sent.add(report.step)
                    self.sink(Measured(trial_id, report.step, mean, report.timestamp))
                if math.isfinite(mean) and self.stopper.should_stop(trial_id, report.step, mean):
                    proc.stop("stopped early: unproductive by the early-stopping policy")

    def _combined(self, slot: Slot) -> Any:
        curves = [*slot.curves, slot.current]
        return combine_executions(
            curves, self.space.metric.minimize, self.space.measurement_selection
        )

    def _slot_final(self, slot: Slot) -> float | None:
        """A trial's final value: by the selection, or Keras Tuner's score (the mean of its
        executions' selected values) for a trial run several times."""
        if slot.execution:
            return self._combined(slot).score
        return select_final(
            slot.values, self.space.metric.minimize, self.space.measurement_selection
        )

    def _finish(self, slot: Slot, code: int) -> None:
        """Map how a trial process ended to a status, in one place. A trial run several times
        ends with its last execution, or with the first that failed (which fails the trial,
        its reason naming the execution)."""
        proc, trial = slot.proc, slot.trial
        final = self._slot_final(slot)
        own = list(slot.current.values()) if slot.execution else slot.values
        own_final = select_final(own, self.space.metric.minimize)
        why = proc.stop_requested if proc else ""
        if why.startswith("stopped early") and own_final is not None:
            status, reason = STOPPED, why
        elif why and not why.startswith("stopped early"):
            status, reason = FAILED, why
        elif code != 0:
            status, reason = FAILED, _failure_reason(code, proc)
        elif own_final is None:
            status, reason = FAILED, f"the trainer reported no {self.space.metric.tag}"
        else:
            status, reason = COMPLETED, ""
        if slot.execution:
            reason = self._execution_reason(slot, status, reason)
            self._send_mean(slot, every_step=status == COMPLETED)
        self._record_end(trial, status, final, reason)
        slot.trial, slot.proc, slot.values = None, None, []
        slot.execution, slot.curves, slot.current = 0, [], {}

    def _execution_reason(self, slot: Slot, status: TrialStatus, reason: str) -> str:
        k, n = slot.execution, self.executions
        if status == FAILED and f"(execution {k} of {n})" not in reason:
            seed = f", seed {slot.seeds[k - 1]}" if self.space.trainer.seed_flag else ""
            return f"execution {k} of {n}{seed} failed: {reason}"
        return reason

    def _send_mean(self, slot: Slot, every_step: bool) -> None:
        """The trial's mean curve at the steps not emitted yet: an execution failed before the
        last, or a step the last did not report. A trial that did not complete gets the steps
        every execution it ran reported (not a tail that only its earlier executions reached)."""
        combined = self._combined(slot)
        for (step, mean), count in zip(combined.curve, combined.counts, strict=True):
            if not every_step and count < combined.executions:
                continue
            if step not in slot.mean_sent and math.isfinite(mean):
                slot.mean_sent.add(step)
                self.sink(Measured(slot.trial.trial_id, step, mean))

    def _record_end(
        self, trial: Any, status: TrialStatus, final: float | None, reason: str
    ) -> None:
        self._end_in_oracle(trial, status, final, reason)
        self.stopper.trial_ended(trial.trial_id, status)
        self.failed += status == FAILED
        self.ended.append((trial.trial_id, status, final))
        self.sink(TrialEnded(trial.trial_id, status, final, reason))
        log.info("trial %s %s %s", trial.trial_id, status, reason)

    def _end_in_oracle(self, trial: Any, status: str, final: float | None, reason: str) -> None:
        # "best" feeds the oracle every step; "last" and a trial's executions their final only.
        if final is not None and (
            self.space.measurement_selection == "last" or self.executions > 1
        ):
            self.oracle.update_trial(trial.trial_id, {self.space.metric.tag: final})
        # Keras Tuner scores a COMPLETED trial by its metric: without one it can only be FAILED.
        trial.status = "FAILED" if status == FAILED or final is None else "COMPLETED"
        trial.message = reason or None
        self.oracle.end_trial(trial)

    def _stop_all(self, why: str, keep_for_resume: bool) -> None:
        """Stop every running trial; wait (bounded) for them to exit."""
        running = [s for s in self.slots if s.proc is not None]
        for slot in running:
            slot.proc.stop(why, grace_s=10)
        deadline = time.monotonic() + 15
        while any(s.proc.exit_code() is None for s in running) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        for slot in running:
            slot.proc.kill()
            self._take_reports(slot)
            final = self._slot_final(slot)
            if not keep_for_resume:  # a resumed study re-runs the trials left in the oracle
                self._end_in_oracle(slot.trial, STOPPED, final, why)
            self.ended.append((slot.trial.trial_id, STOPPED, final))
            self.sink(TrialEnded(slot.trial.trial_id, STOPPED, final, why))
            slot.trial, slot.proc = None, None
            slot.execution, slot.curves, slot.current = 0, [], {}

    # -- helpers ------------------------------------------------------------------------------
    def _replay_record(self) -> None:
        """On resume, re-emit the trials the oracle holds as ended, so the recorders catch up on
        whatever a crash kept from them (the MLflow recorder skips what it already has), and
        count them against the budget. A trial still running when the study stopped is retried
        from its checkpoint: it is announced when it starts again (`_start`), once."""
        for trial_id in self.oracle.start_order:
            trial = self.oracle.trials[trial_id]
            if trial.status not in ("COMPLETED", "FAILED"):
                continue
            _, tuner = split_values(trial.hyperparameters.values)
            params = recorded(trial, self.space)
            hyperband = HyperbandRound.from_tuner(tuner)
            self.sink(TrialStarted(trial_id, int(trial_id) + 1, params, hyperband=hyperband))
            reason = trial.message or ""
            completed = trial.status == "COMPLETED" and not reason.startswith("stopped early")
            curve, final = self._replay_points(trial, completed)
            if trial.status == "FAILED":
                status = FAILED
                self.failed += 1
            else:
                status = STOPPED if reason.startswith("stopped early") else COMPLETED
                self.stopper.seed_completed(trial_id, curve)
            self.ended.append((trial_id, status, final))
            self.sink(TrialEnded(trial_id, status, final, reason))

    def _replay_points(self, trial: Any, completed: bool) -> tuple[dict[int, float], float | None]:
        """Emit an ended trial's points again; its curve and final value (a trial run several
        times: its mean curve as _send_mean emitted it)."""
        trial_id, minimize = trial.trial_id, self.space.metric.minimize
        if self.executions == 1:
            curve = self._curve(trial)
            for step, value in curve.items():
                self.sink(Measured(trial_id, step, value))
            return curve, select_final(
                list(curve.values()), minimize, self.space.measurement_selection
            )
        curves = [self._execution_curve(trial_id, k) for k in range(1, self.executions + 1)]
        for k, points in enumerate(curves, start=1):
            for step, value in points.items():
                self.sink(Measured(trial_id, step, value, execution=k))
        curves = [c for c in curves if c]  # the executions that ran
        combined = combine_executions(curves, minimize, self.space.measurement_selection)
        full = len(curves)
        curve = {
            step: v
            for (step, v), count in zip(combined.curve, combined.counts, strict=True)
            if math.isfinite(v) and (completed or count == full)
        }
        for step, value in curve.items():
            self.sink(Measured(trial_id, step, value))
        return curve, combined.score

    def _curve(self, trial: Any) -> dict[int, float]:
        """Every (step, value) known for a trial: the oracle's record and its hypertune file."""
        tag = self.space.metric.tag
        curve: dict[int, float] = {}
        if trial.metrics.exists(tag):
            for obs in trial.metrics.get_history(tag):
                curve[int(obs.step)] = float(obs.value[-1])
        metric_file = self.req.workdir / "trials" / trial.trial_id / "hypertune" / "output.metrics"
        for report in read_reports(metric_file, tag):
            curve.setdefault(report.step, report.value)
        return dict(sorted(curve.items()))

    def _slot_env(self, slot: Slot) -> dict[str, str]:
        env = dict(self.base_env)
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
            env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # slots may share a GPU
        return env

    def _end(self, status: TrialStatus, reason: str) -> StudyEnded:
        best = best_of(self.ended, self.space.metric.minimize)
        ended = StudyEnded(
            self.req.study, status, best[0] if best else None, best[1] if best else None, reason
        )
        self.sink(ended)
        return ended


def _failure_reason(code: int, proc: TrialProcess) -> str:
    """`<how it ended>: <its last meaningful stderr lines>`. Out of memory only where something
    says so: the system (kernel log, cgroup counter: TrialProcess.oom_evidence) or the trainer's
    own output (TensorFlow's ResourceExhaustedError, "out of memory"); a bare SIGKILL is just
    "killed by signal 9"."""
    head = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    tail = proc.failure_reason()
    oom_evidence = proc.oom_evidence() if code == -9 else ""  # the OOM killer sends SIGKILL
    lowered = tail.lower()
    if oom_evidence:
        head = f"out of memory ({head}; {oom_evidence})"
    elif "resourceexhausted" in lowered or "out of memory" in lowered or " oom" in lowered:
        head = f"GPU/host out of memory ({head})"
    return f"{head}: {tail}" if tail else head
