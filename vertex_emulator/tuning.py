"""Running a HyperparameterTuningJob: trials scheduled like Vertex, measured while they run.

Up to parallel_trial_count trials at a time, max_trial_count in all (fewer when a grid runs
out). Each trial runs worker pool 0 of trial_job_spec with its parameters appended as
--name=value, CLOUD_ML_TRIAL_ID and a per-trial CLOUD_ML_HP_METRIC_FILE, and AIP_*_DIR under
<baseOutputDirectory>/<trial id>/. Its hypertune file is read while it runs; each new step
becomes a measurement, visible in GET at once.

Trial ends:
- exit 0 with a finite measurement: SUCCEEDED, final_measurement by measurement_selection_type
  (BEST_MEASUREMENT, or LAST_MEASUREMENT which is also what UNSPECIFIED means).
- non-zero exit, or no finite measurement: INFEASIBLE with infeasible_reason (stderr tail).
- stopped by an automated stopping rule (trialkit/early_stopping.py: median or decay_curve):
  STOPPING while it is being terminated (SIGTERM, then SIGKILL after the grace period), then
  SUCCEEDED with the final measurement chosen from what it reported (Vizier's contract: the
  service asks a trial to stop, the trial is then completed with its measurements), or
  INFEASIBLE when it had none. The Trial proto has no "stopped early"
  field, so a client sees it only as a SUCCEEDED trial with fewer measurements.
- cancelled with its job, or stopped because the job failed: INFEASIBLE, saying so.
- suggested with values outside the parameter specs (specs.outside: a suggestion algorithm's
  bug, Vertex never does it): INFEASIBLE with the reason, never started.

The job FAILS once max_failed_trial_count trials are INFEASIBLE (reaching the count fails it:
"the number of failed Trials that need to be seen before failing"); 0 means "Vertex decides",
which the emulator takes as max_trial_count, i.e. the job fails only if every trial fails. A job
that ends with no SUCCEEDED trial is FAILED too.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass, field

from trialkit.early_stopping import RULES
from trialkit.hypertune_file import MetricTail, select_final
from vertex_emulator.errors import EmulatorError
from vertex_emulator.jobs import (
    CANCELLED,
    CANCELLED_CODE,
    FAILED,
    INTERNAL_CODE,
    RUNNING,
    SUCCEEDED,
    Halted,
    Outcome,
    job_dir,
    prepare_packages,
    set_state,
    spec_timeout_s,
    upload_outputs,
)
from vertex_emulator.runner import (
    LaunchError,
    Outputs,
    Runtime,
    TrialContext,
    WorkerProcess,
    output_dirs,
    plan,
    stop_leftover,
)
from vertex_emulator.specs import (
    CATEGORICAL,
    as_flag,
    cast,
    ordered,
    outside,
    params_from_study,
    walk,
)
from vertex_emulator.store import Store, touch
from vertex_emulator.suggest import make_suggester

log = logging.getLogger(__name__)

REQUESTED, ACTIVE, STOPPING, TRIAL_SUCCEEDED, INFEASIBLE = 1, 2, 3, 4, 5  # Trial.State
MAXIMIZE, MINIMIZE = 1, 2  # MetricSpec.GoalType (0 = maximize)
LAST_MEASUREMENT, BEST_MEASUREMENT = 1, 2
TIMED_OUT = "timed out"


@dataclass
class TrialRun:
    id: str
    process: WorkerProcess | None  # None: a trial ended from what it measured (_carry_on)
    tail: MetricTail | None
    outputs: Outputs | None
    started: float = field(default_factory=time.time)
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # step, value, elapsed
    deadline: float | None = None  # time.monotonic() past which it is stopped (spec timeout)
    stop_reason: str = ""  # set once the emulator asked it to stop


class TuningJob:
    """One HyperparameterTuningJob's scheduler; run() returns when the job has ended."""

    def __init__(self, rt: Runtime, store: Store, name: str, cancel: threading.Event) -> None:
        self.rt, self.store, self.name, self.cancel = rt, store, name, cancel
        job = store.get(name)
        study = job.study_spec
        self.job = job
        self.metric = study.metrics[0].metric_id
        self.minimize = study.metrics[0].goal == MINIMIZE
        self.selection = "best" if study.measurement_selection_type == BEST_MEASUREMENT else "last"
        self.params = params_from_study(study)
        stopping = study.WhichOneof("automated_stopping_spec")
        policy = (
            (stopping or "").replace("_automated_stopping_spec", "").replace("_stopping_spec", "")
        )
        self.rule = RULES.get(policy)
        self.use_elapsed = bool(stopping) and getattr(study, stopping).use_elapsed_duration
        if stopping and self.rule is None:
            log.warning("%s: %s is accepted but not applied by the emulator", name, stopping)
        self.max_failed = job.max_failed_trial_count or job.max_trial_count
        self.directory = job_dir(rt, name)
        self.running: dict[str, TrialRun] = {}
        self.completed_curves: list[list[tuple[float, float]]] = []
        self.created = self.failed = self.succeeded = 0
        self.exhausted = False
        self.last_failure = ""

    def run(self) -> Outcome:
        """Run the job to its end; a job that already has trials (the emulator restarted under
        it) is carried on from them (see _carry_on)."""
        self.store.update(self.name, set_state(RUNNING))
        try:
            self.packages = prepare_packages(self.rt, self.job.trial_job_spec, self.directory)
            self.suggester = self._suggester()
            self._carry_on()
            outcome = self._loop()
        except (LaunchError, EmulatorError, OSError) as err:
            outcome = Outcome(FAILED, INTERNAL_CODE, f"The tuning job could not run: {err}")
        except Halted:
            self._halt()
            raise
        finally:
            self._stop_all("The trial was stopped because its job ended.")
        self.store.update(self.name, set_state(outcome.state, outcome))
        log.info("%s ended %s", self.name, outcome)
        return outcome

    def _suggester(self):
        study = self.job.study_spec
        # Seeded by the display name, not the id: the same study suggests the same values again.
        seed = zlib.crc32(f"{self.rt.seed}:{self.job.display_name}".encode()) % 100_000 + 1
        state_dir = self.directory / "oracle"
        state_dir.mkdir(parents=True, exist_ok=True)
        return make_suggester(
            study.algorithm,
            self.params,
            self.metric,
            self.minimize,
            seed,
            state_dir,
            self.rt.bayesian,
        )

    def _loop(self) -> Outcome:
        while True:  # each pass waits poll_s; ends when no trial runs and none can start
            if self.cancel.is_set():
                if self.rt.halting.is_set():
                    raise Halted
                self._stop_all("The trial was cancelled with its job.")
                return Outcome(CANCELLED, CANCELLED_CODE, "CANCELED")
            for trial in list(self.running.values()):
                self._watch(trial)
            if self.failed >= self.max_failed:
                self._stop_all("The trial was stopped because its job failed.")
                return Outcome(FAILED, INTERNAL_CODE, self._failure_message())
            self._fill()
            if not self.running:
                break
            self.cancel.wait(self.rt.poll_s)
        if not self.succeeded:
            return Outcome(FAILED, INTERNAL_CODE, self._failure_message())
        return Outcome(SUCCEEDED)

    def _failure_message(self) -> str:
        if not self.created:
            return "No trial could be suggested."
        head = f"{self.failed} of {self.created} trials failed"
        if self.failed >= self.max_failed:
            head += f" (max_failed_trial_count {self.max_failed} reached)"
        return f"{head}. Last failure: {self.last_failure}"

    # -- after a restart of the emulator ------------------------------------------------------

    def _carry_on(self) -> None:
        """Take up the trials a previous emulator left: ended ones are counted and told to the
        suggester again; a running one is started again with its parameters, its output and
        checkpoint directories (a trainer that checkpoints resumes there) and the measurements
        it had; one that was being stopped ends from what it measured."""
        for trial in self.store.get(self.name).trials:
            values = _values(self.params, trial)
            self.created = max(self.created, int(trial.id) if trial.id.isdigit() else 0)
            if trial.state in (TRIAL_SUCCEEDED, INFEASIBLE):
                final = (
                    trial.final_measurement.metrics[0].value
                    if trial.HasField("final_measurement") and trial.final_measurement.metrics
                    else None
                )
                self.suggester.replay(trial.id, values, final, ended=True)
                self._count(trial, final)
                continue
            self.suggester.replay(trial.id, values, None, ended=False)
            stop_leftover(self.directory / "trials" / trial.id)
            curve = [_point(m) for m in trial.measurements]
            if trial.state == STOPPING:
                run = TrialRun(trial.id, None, None, None, curve=curve)
                run.stop_reason = "stopped early by the automated stopping rule"
                self._finish(run, 0)
                continue
            log.warning("%s: starting trial %s again after a restart", self.name, trial.id)
            self._start_process(trial.id, ordered(self.params, values), curve)

    def _count(self, trial, final: float | None) -> None:
        if trial.state == INFEASIBLE:
            self.failed += 1
            self.last_failure = f"trial {trial.id}: {trial.infeasible_reason}"
            return
        self.succeeded += 1
        axis = 2 if self.use_elapsed else 0
        self.completed_curves.append([(p[axis], p[1]) for p in map(_point, trial.measurements)])

    # -- starting trials ---------------------------------------------------------------------

    def _fill(self) -> None:
        while (
            len(self.running) < max(1, self.job.parallel_trial_count)
            and self.created < self.job.max_trial_count
            and not self.exhausted
        ):
            trial_id = str(self.created + 1)
            values = self.suggester.suggest(trial_id)
            if values is None:
                self.exhausted = True
                return
            self.created += 1
            self._launch(trial_id, values)

    def _launch(self, trial_id: str, values: dict) -> None:
        pairs = ordered(self.params, values)
        self.store.update(self.name, lambda job: _add_trial(job, trial_id, pairs))
        problem = outside(self.params, values)
        if problem:  # a suggestion algorithm's bug: Vertex never starts such a trial
            log.warning(
                "%s: trial %s outside the parameter specs: %s", self.name, trial_id, problem
            )
            self._not_started(trial_id, f"its parameters are outside the study's specs: {problem}")
            return
        self._start_process(trial_id, pairs, [])

    def _start_process(self, trial_id: str, pairs, curve: list) -> None:
        trial_dir = self.directory / "trials" / trial_id
        spec = self.job.trial_job_spec
        base = spec.base_output_directory.output_uri_prefix
        metric_file = trial_dir / "hypertune" / "output.metrics"
        context = TrialContext(trial_id, tuple(as_flag(p.id, v) for p, v in pairs), metric_file)
        try:
            outputs = output_dirs(self.rt, base, trial_id) if base else None
            launch = plan(
                self.rt, spec.worker_pool_specs[0], trial_dir, outputs, {}, self.packages, context
            )
            process = WorkerProcess(launch)
        except (LaunchError, OSError) as err:
            self._not_started(trial_id, str(err))
            return
        tail = MetricTail(metric_file, self.metric)
        timeout = spec_timeout_s(spec)
        deadline = time.monotonic() + timeout if timeout else None
        run = TrialRun(trial_id, process, tail, outputs, curve=curve, deadline=deadline)
        self.running[trial_id] = run
        self.store.update(self.name, lambda job: setattr(_trial(job, trial_id), "state", ACTIVE))

    def _not_started(self, trial_id: str, why: str) -> None:
        self.failed += 1
        self.last_failure = f"trial {trial_id}: could not start: {why}"
        self.suggester.tell(trial_id, None)
        self._end(trial_id, INFEASIBLE, None, f"The trial could not start: {why}")

    # -- watching trials ---------------------------------------------------------------------

    def _watch(self, trial: TrialRun) -> None:
        self._measure(trial)
        if trial.deadline and time.monotonic() > trial.deadline and not trial.stop_reason:
            trial.stop_reason = TIMED_OUT
            trial.process.request_stop(self.rt.grace_s)
        code = trial.process.poll()
        if code is None:
            return
        self._measure(trial)  # what it wrote just before exiting
        del self.running[trial.id]
        upload_outputs(self.rt, trial.outputs)
        self._finish(trial, code)

    def _measure(self, trial: TrialRun) -> None:
        fresh = trial.tail.poll()
        if not fresh:
            return
        points = [(r.step, r.value, max(0.0, r.timestamp - trial.started)) for r in fresh]
        by_step = {point[0]: point for point in [*trial.curve, *points]}  # a rerun re-reports
        trial.curve[:] = sorted(by_step.values(), key=lambda point: point[0])
        self.store.update(self.name, lambda job: _set_measurements(job, trial, self.metric))
        if self.rule and not trial.stop_reason and self._should_stop(trial):
            trial.stop_reason = "stopped early by the automated stopping rule"
            trial.process.request_stop(self.rt.grace_s)
            self.store.update(
                self.name, lambda job: setattr(_trial(job, trial.id), "state", STOPPING)
            )
            log.info("%s: trial %s %s", self.name, trial.id, trial.stop_reason)

    def _should_stop(self, trial: TrialRun) -> bool:
        axis = 2 if self.use_elapsed else 0
        current = [(point[axis], point[1]) for point in trial.curve]
        return self.rule(current, self.completed_curves, self.minimize)

    def _finish(self, trial: TrialRun, code: int) -> None:
        state, final, reason = self._verdict(trial, code)
        if state == INFEASIBLE:
            self.failed += 1
            self.last_failure = f"trial {trial.id}: {reason}"
        else:
            self.succeeded += 1
            axis = 2 if self.use_elapsed else 0
            self.completed_curves.append([(p[axis], p[1]) for p in trial.curve])
        self.suggester.tell(trial.id, final)
        self._end(trial.id, state, final, reason)

    def _verdict(self, trial: TrialRun, code: int) -> tuple[int, float | None, str]:
        """The trial's end state, final value and infeasible reason."""
        values = [value for _, value, _ in trial.curve]
        final = select_final(values, self.minimize, self.selection)
        if trial.stop_reason == TIMED_OUT:
            return INFEASIBLE, None, "The trial exceeded the timeout of its trial_job_spec."
        if trial.stop_reason:
            if final is None:
                return INFEASIBLE, None, f"The trial was {trial.stop_reason} before measuring."
            return TRIAL_SUCCEEDED, final, ""
        if code != 0:
            tail = trial.process.stderr_tail()
            return INFEASIBLE, None, f"The trial exited with status {code}.\n{tail}".strip()
        if final is None:
            return INFEASIBLE, None, f"The trial reported no finite {self.metric!r}."
        return TRIAL_SUCCEEDED, final, ""

    def _end(self, trial_id: str, state: int, final: float | None, reason: str) -> None:
        selection = self.selection
        self.store.update(
            self.name, lambda job: _end_trial(job, trial_id, state, final, reason, selection)
        )

    def _halt(self) -> None:
        """Stop every running trial's process and keep the trial as it is (the emulator is
        stopping; its next start runs the trial again)."""
        trials = list(self.running.values())
        self.running.clear()
        for trial in trials:
            trial.process.request_stop(self.rt.grace_s)
        for trial in trials:
            trial.process.stop(self.rt.grace_s)
            self._measure(trial)

    def _stop_all(self, reason: str) -> None:
        """Stop every running trial (SIGTERM together, then SIGKILL after grace); INFEASIBLE."""
        trials = list(self.running.values())
        self.running.clear()
        for trial in trials:
            trial.process.request_stop(self.rt.grace_s)
        for trial in trials:
            trial.process.stop(self.rt.grace_s)
            self._measure(trial)
            upload_outputs(self.rt, trial.outputs)
            self.store.update(
                self.name, lambda job, t=trial: _end_trial(job, t.id, INFEASIBLE, None, reason, "")
            )


# -- changes to the job's Trial protos (run under the store's lock) ----------------------------


def _trial(job, trial_id: str):
    return next(t for t in job.trials if t.id == trial_id)


def _add_trial(job, trial_id: str, pairs) -> None:
    trial = job.trials.add()
    trial.id = trial_id
    trial.state = REQUESTED
    touch(trial, "start_time")
    for param, value in pairs:
        parameter = trial.parameters.add()
        parameter.parameter_id = param.id
        if param.kind == CATEGORICAL or isinstance(value, str):  # a str: out of spec, shown
            parameter.value.string_value = str(value)
        else:
            parameter.value.number_value = float(value)


def _set_measurements(job, run: TrialRun, metric: str) -> None:
    trial = _trial(job, run.id)
    del trial.measurements[:]
    for step, value, elapsed in run.curve:
        _fill_measurement(trial.measurements.add(), step, value, elapsed, metric)


def _fill_measurement(measurement, step: int, value: float, elapsed: float, metric: str) -> None:
    measurement.step_count = step
    measurement.elapsed_duration.FromNanoseconds(int(elapsed * 1e9))
    entry = measurement.metrics.add()
    entry.metric_id = metric
    entry.value = value


def _end_trial(job, trial_id: str, state: int, final: float | None, reason: str, selection: str):
    trial = _trial(job, trial_id)
    trial.state = state
    touch(trial, "end_time")
    if state == INFEASIBLE:
        trial.infeasible_reason = reason
    if final is not None:
        chosen = [m for m in trial.measurements if m.metrics and m.metrics[0].value == final]
        source = chosen[-1] if selection == "last" else chosen[0]
        trial.final_measurement.CopyFrom(source)


def _values(params, trial) -> dict:
    """A stored trial's parameters as the suggesters hand them out."""
    kinds = {p.id: p for p in walk(params)}
    values = {}
    for parameter in trial.parameters:
        param = kinds.get(parameter.parameter_id)
        raw = parameter.value
        value = raw.string_value if raw.HasField("string_value") else raw.number_value
        values[parameter.parameter_id] = cast(param, value) if param else value
    return values


def _point(measurement) -> tuple[int, float, float]:
    value = measurement.metrics[0].value if measurement.metrics else float("nan")
    elapsed = measurement.elapsed_duration.ToTimedelta().total_seconds()
    return int(measurement.step_count), value, elapsed
