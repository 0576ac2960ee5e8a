"""The contract between the flow (dualtune/) and a backend, written once for every backend.

- Events: a backend runs a study and emits StudyStarted, TrialStarted, Measured, TrialEnded and
  StudyEnded to a sink; recorders (MLflow, terminal display, study record) consume them. A
  backend never imports MLflow, so everything downstream of the events is written once. What a
  backend tells about a study or a trial beyond the common fields is a typed, optional field
  (a Vertex job, a local pid...), never a free dict whose keys only the recorders know.
- Statuses: `TrialStatus` and the one rule for a usable trial and the best one
  (trialkit/status.py: usable, better, best_of, ranked), for trials and studies alike.
- Backends: `Backend` runs a study in this process; `JobBackend` also submits it as a job that
  runs elsewhere and can be followed again (attach) from any process.
- Settings: every backend's settings follow `BackendSettings` (record, resumed, resolve).

tests/backends/test_contract.py runs one suite against every entry of backends/registry.py.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from search_spaces.model import SearchSpace
from trialkit.status import (
    COMPLETED,
    FAILED,
    RUNNING,
    STOPPED,
    TERMINAL,
    TrialStatus,
    best_of,
    better,
    ranked,
    usable,
)

__all__ = [
    "COMPLETED",
    "FAILED",
    "RUNNING",
    "STOPPED",
    "TERMINAL",
    "TrialStatus",
    "best_of",
    "better",
    "ranked",
    "usable",
]


def _present(values: dict[str, Any]) -> dict[str, str]:
    """The values that are set (not None), as strings: what a recorder keeps of them."""
    return {k: str(v) for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class StudyStarted:
    study: str
    backend: str
    algorithm: str
    space: SearchSpace
    _: KW_ONLY  # what a backend tells beyond the common fields, by name
    job: str | None = None  # a job backend: the submitted job's resource name
    console_url: str | None = None  # where a person sees that job
    output_dir: str | None = None  # a job backend: the job's base output directory
    workdir: str | None = None  # a local backend: the study's own directory
    seed: int | None = None  # a local backend: the oracle's seed

    @property
    def key(self) -> str:
        """What tells this study's runs from another study of the same name: the job it
        submitted, else the directory it runs in, else its name."""
        return self.job or self.workdir or self.study

    def details(self) -> dict[str, str]:
        """The optional fields that are set, as strings, under the names recorders keep."""
        return _present(
            {
                "job": self.job,
                "console_url": self.console_url,
                "output_dir": self.output_dir,
                "workdir": self.workdir,
                "seed": self.seed,
            }
        )


@dataclass(frozen=True)
class HyperbandRound:
    """Keras Tuner Hyperband's bookkeeping for one trial (its `tuner/...` values): the epochs
    to train up to, where a continued trial starts, and the trial it continues."""

    epochs: int
    initial_epoch: int
    bracket: int
    round: int
    parent: str | None = None  # tuner/trial_id: warm-start from this trial's checkpoints

    @classmethod
    def from_tuner(cls, values: dict[str, Any]) -> HyperbandRound | None:
        """From an oracle's `tuner/...` values; None when there are none (not Hyperband)."""
        if "tuner/epochs" not in values:
            return None
        return cls(
            int(values["tuner/epochs"]),
            int(values["tuner/initial_epoch"]),
            int(values["tuner/bracket"]),
            int(values["tuner/round"]),
            str(values["tuner/trial_id"]) if values.get("tuner/trial_id") else None,
        )

    def tuner_values(self) -> dict[str, str]:
        """Back under Keras Tuner's own names, as strings."""
        return _present(
            {
                "tuner/epochs": self.epochs,
                "tuner/initial_epoch": self.initial_epoch,
                "tuner/bracket": self.bracket,
                "tuner/round": self.round,
                "tuner/trial_id": self.parent,
            }
        )


@dataclass(frozen=True)
class TrialStarted:
    trial_id: str
    number: int  # 1-based order of creation within the study
    params: dict[str, Any]  # cast to their declared types
    _: KW_ONLY
    pid: int | None = None  # a local trial's process (None: no process was started)
    gpu: str | None = None  # the GPU a local trial is pinned to ("": none)
    directory: str | None = None  # the trial's output directory (a local path or gs:// URI)
    mapped_into_space: str = ""  # a suggestion moved into the space, e.g. "units 17 -> 16"
    vertex_trial_id: str | None = None  # the trial's id in its Vertex job
    hyperband: HyperbandRound | None = None
    executions: int | None = None  # executions_per_trial > 1: how many runs the trial makes
    execution_seeds: tuple[int, ...] = ()  # their training seeds (empty: no seed flag)

    def details(self) -> dict[str, str]:
        """The optional fields that are set, as strings, under the names recorders keep."""
        return _present(
            {
                "pid": self.pid,
                "gpu": self.gpu,
                "dir": self.directory,
                "mapped_into_space": self.mapped_into_space or None,
                "vertex_trial_id": self.vertex_trial_id,
                "executions": self.executions,
                "execution_seeds": ",".join(map(str, self.execution_seeds)) or None,
                **(self.hyperband.tuner_values() if self.hyperband else {}),
            }
        )


@dataclass(frozen=True)
class Measured:
    """One point of a trial's curve. A trial run several times (executions_per_trial > 1)
    emits each execution's own points (`execution` = 1..N) and the trial's curve, the mean over
    its executions (`execution` None): the one its status, final value and the oracle use."""

    trial_id: str
    step: int  # epoch number, 1-based, as the trainer reported it (hypertune global_step)
    value: float  # the space's metric tag
    timestamp: float = 0.0
    execution: int | None = None  # 1-based: a point of that execution alone


@dataclass(frozen=True)
class TrialEnded:
    trial_id: str
    status: TrialStatus  # COMPLETED, FAILED or STOPPED
    final_value: float | None = None  # by the study's measurement selection
    reason: str = ""  # failure reason (tail of stderr, NaN, early stopping...)


@dataclass(frozen=True)
class StudyEnded:
    study: str
    status: TrialStatus  # COMPLETED, FAILED or STOPPED (Ctrl-C)
    best_trial_id: str | None = None  # by trialkit.status.best_of over the ended trials
    best_value: float | None = None
    reason: str = ""


# -- executions: one run of the trainer outside the search (baseline, confirmation, finalize) --
BASELINE = "baseline"  # the guess: tuning args, a seed, no parameter flags
CONFIRMATION = "confirmation"  # a top trial re-run at a fresh seed
FINALIZE = "finalize"  # the winner trained with the finalize args
ROLES = (BASELINE, CONFIRMATION, FINALIZE)


@dataclass(frozen=True)
class Execution:
    """One invocation of the trainer, run once, outside the search: the argv is the role's
    args (tuning or finalize), the seed args, the extra args, then the parameter flags (none for
    the guess: the trainer's own defaults)."""

    role: str  # BASELINE, CONFIRMATION or FINALIZE
    id: str  # unique within the study, e.g. "baseline-1", "confirm-03-2", "finalize"
    study: str
    space: SearchSpace
    params: dict[str, Any]  # cast; {} for the guess
    args: tuple[str, ...]  # the trainer's tuning_args or finalize_args
    workdir: Path  # the study's directory
    _: KW_ONLY
    seed: int | None = None  # the training seed (seed_args set it when the trainer has a flag)
    seed_args: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    number: int = 1  # 1-based among the executions of its role (and trial)
    trial_id: str | None = None  # a confirmation: the trial it re-runs

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES} (got {self.role!r})")

    def trainer_args(self) -> tuple[str, ...]:
        """Everything after the trainer's entry point."""
        flags = self.space.flags(self.params)
        return (*self.args, *self.seed_args, *self.extra_args, *flags)


@dataclass(frozen=True)
class ExecutionResult:
    """How an execution ended: its status, score (by the space's measurement selection), its
    curve, and where its outputs are."""

    execution_id: str
    status: TrialStatus  # COMPLETED or FAILED (STOPPED: interrupted)
    final_value: float | None
    measurements: tuple[tuple[int, float], ...]
    reason: str = ""
    _: KW_ONLY
    directory: str | None = None  # a local execution's directory
    job: str | None = None  # a job backend: the CustomJob's resource name
    console_url: str | None = None
    model_dir: Path | None = None  # a local directory holding what the trainer exported
    model_uri: str | None = None  # a job backend: where the job wrote the model
    metrics_file: Path | None = None


@dataclass(frozen=True)
class ExecutionStarted:
    execution_id: str
    role: str
    number: int
    params: dict[str, Any]  # {} for the guess
    _: KW_ONLY
    trial_id: str | None = None  # a confirmation: the trial it re-runs
    seed: int | None = None
    directory: str | None = None
    job: str | None = None
    console_url: str | None = None

    def details(self) -> dict[str, str]:
        return _present(
            {
                "seed": self.seed,
                "dir": self.directory,
                "job": self.job,
                "console_url": self.console_url,
            }
        )


@dataclass(frozen=True)
class ExecutionEnded:
    execution_id: str
    role: str
    status: TrialStatus
    final_value: float | None = None
    reason: str = ""
    trial_id: str | None = None


@dataclass(frozen=True)
class StudyVerdict:
    """The study's verdict (dualtune/verdict.py), emitted before StudyEnded: the winner (a
    trial id, "baseline" or None), the noise, the winner's gain over the guess, in words."""

    winner: str | None
    noise: float | None
    improvement_pct: float | None
    guess_mean: float | None
    guess_runs: int
    best_line: str
    words: str


Event = (
    StudyStarted
    | TrialStarted
    | Measured
    | TrialEnded
    | StudyEnded
    | ExecutionStarted
    | ExecutionEnded
    | StudyVerdict
)
Sink = Callable[[Event], None]


@dataclass(frozen=True)
class StudyRequest:
    """Everything a backend needs to run one study; flags already merged over the space file."""

    study: str
    space: SearchSpace
    workdir: Path  # the study's own directory (trial outputs, oracle state, record)
    extra_args: tuple[str, ...] = ()  # `-- extra trainer args`, appended after the tuning args
    env: dict[str, str] = field(default_factory=dict)  # --env KEY=VALUE, passed to every trial


@dataclass(frozen=True)
class FinalizeRequest:
    study: str
    space: SearchSpace
    params: dict[str, Any]  # the best trial's parameters, cast, tuner keys stripped
    workdir: Path
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    winner: str = ""  # the trial whose parameters these are (a label on a registered model)
    register: bool = True  # a backend with a model registry (vertex) registers the model there


@dataclass(frozen=True)
class FinalizeResult:
    model_dir: Path  # local directory holding the exported model
    measurements: list[tuple[int, float]]  # per-epoch (step, metric)
    metrics_file: Path | None = None  # JSON of final/test metrics written by the trainer, if any
    _: KW_ONLY
    directory: str | None = None  # a local backend: the finalize run's own directory
    job: str | None = None  # a job backend: the finalize job's resource name
    console_url: str | None = None
    model_uri: str | None = None  # a job backend: where the job wrote the model
    registry_model: str | None = None  # a backend's model registry: the model's resource name
    registry_version: str | None = None  # and the version this finalize added to it


S = TypeVar("S", bound="BackendSettings")


@runtime_checkable
class BackendSettings(Protocol):
    """What every backend's settings (a frozen dataclass, see backends/registry.py) offer the
    flow, so it rebuilds a study's backend with no flags given again."""

    def record(self) -> dict[str, Any]:
        """What the study record (study.json) keeps of these settings."""
        ...

    def resumed(self: S, recorded: dict[str, Any]) -> S:
        """These settings for `--resume` of a study that recorded `recorded`."""
        ...

    def resolve(self: S, recorded: dict[str, Any] | None = None, job: str | None = None) -> S:
        """Complete settings (for attach and finalize): given values first, then what the
        study recorded, then what the job's name says. Raises UserError naming a setting
        still missing; settings complete as given return themselves."""
        ...


class Backend(abc.ABC):
    """Runs a study and emits events; finalize retrains one parameter set to completion.

    A backend is built from its own typed settings (see backends/registry.py), so everything
    backend-specific (an interpreter, a seed, a GCP project) lives there, not in the requests.
    """

    name: str

    @classmethod
    def from_settings(cls, settings: Any) -> Backend:
        """The backend for `settings` (the registry builds every backend through this)."""
        return cls(settings)

    def preflight(self, request: StudyRequest) -> None:  # noqa: B027 - optional hook
        """Refuse, before the study's record exists, what this backend would fail on later
        (a trainer that does not take the parameters, an unreachable endpoint...)."""

    def record(self) -> dict[str, Any]:
        """What the study record keeps of this backend's settings, so that `--resume`,
        `attach` and `finalize` rebuild the same backend with no flags given again."""
        return {}

    @abc.abstractmethod
    def run(self, request: StudyRequest, sink: Sink) -> StudyEnded:
        """Run the study to its end, emitting every event to `sink` as it happens.

        The contract (tests/backends/test_contract.py): StudyStarted first and StudyEnded
        last; each trial's TrialStarted before its Measured events, at most one TrialEnded,
        no (trial, execution, step) measured twice; a trainer that fails, reports NaN or is
        stopped early ends FAILED, FAILED or STOPPED with its reason; a suggestion outside the
        space ends FAILED naming the parameter and never reaches the trainer; Ctrl-C ends the study
        STOPPED, its finished trials kept; run again on the same workdir, the study resumes
        without a trial or a measurement twice. With space.trust.executions_per_trial N > 1
        each trial runs the trainer N times at seeds trialkit.executions.run_seeds(
        f"trial/{trial_id}", N), emits every execution's points, and ends with the mean
        curve and the mean of the executions' scores; a failed execution fails the trial."""

    @abc.abstractmethod
    def finalize(self, request: FinalizeRequest, sink: Sink) -> FinalizeResult:
        """Train `request.params` with the space's finalize args; emit Measured events for it."""

    def execute(self, execution: Execution, sink: Sink) -> ExecutionResult:
        """Run the trainer once as `execution` says, emitting Measured events (trial_id: the
        execution's id) as the epochs arrive; the trainer's failure is a FAILED result, not an
        exception. Ctrl-C stops it and raises KeyboardInterrupt."""
        raise NotImplementedError(f"the {self.name} backend runs no executions")

    def execute_all(
        self, executions: list[Execution], sink: Sink, parallel: int = 1
    ) -> list[ExecutionResult]:
        """Run every execution, up to `parallel` at a time (this default: one after another);
        each one's ExecutionStarted/ExecutionEnded pair is emitted by the caller's flow through
        `sink` here, so every backend emits them alike."""
        results = []
        for execution in executions:
            sink(started_event(execution))
            result = self.execute(execution, sink)
            sink(ended_event(execution, result))
            results.append(result)
        return results


def finalize_execution(request: FinalizeRequest) -> Execution:
    """The finalize run as an execution: finalize args, extra args, the parameter flags (none
    when the guess won)."""
    return Execution(
        FINALIZE,
        "finalize",
        request.study,
        request.space,
        dict(request.params),
        request.space.trainer.finalize_args,
        request.workdir,
        extra_args=request.extra_args,
        env=dict(request.env),
    )


def measured_only(sink: Sink) -> Sink:
    """Finalize's sink takes the epochs (Measured events) only."""

    def handle(event: Event) -> None:
        if isinstance(event, Measured):
            sink(event)

    return handle


def started_event(execution: Execution, **details: Any) -> ExecutionStarted:
    """The ExecutionStarted of `execution` (`details`: directory, job, console_url)."""
    return ExecutionStarted(
        execution.id,
        execution.role,
        execution.number,
        dict(execution.params),
        trial_id=execution.trial_id,
        seed=execution.seed,
        **details,
    )


def ended_event(execution: Execution, result: ExecutionResult) -> ExecutionEnded:
    return ExecutionEnded(
        execution.id,
        execution.role,
        result.status,
        result.final_value,
        result.reason,
        execution.trial_id,
    )


class JobBackend(Backend):
    """A backend whose study runs as a job elsewhere: it can be submitted and left (--detach),
    then followed from any process (attach); run() is submit() and follow."""

    @abc.abstractmethod
    def submit(self, request: StudyRequest, sink: Sink) -> str:
        """Create the study's job, emit StudyStarted (with its `job`); the job's name."""

    @abc.abstractmethod
    def attach(self, job: str, request: StudyRequest, sink: Sink) -> StudyEnded:
        """Emit every event of a job submitted earlier (from its current state), then follow
        it to its end. Ctrl-C stops following and leaves the job running."""

    @abc.abstractmethod
    def job_name(self, job: str) -> str:
        """The job's full resource name from what a person typed (a full name or a bare ID)."""
