"""The Backend interface and the trial events every backend emits.

Data flows one way: a backend runs a study and emits TrialStarted, Measured and TrialEnded events
to a sink; recorders (MLflow, terminal display, study record) consume them. A backend never imports
MLflow, so everything downstream of the events is written once for both backends.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces.model import SearchSpace
from trialkit.status import COMPLETED, FAILED, RUNNING, STOPPED, TERMINAL

__all__ = ["COMPLETED", "FAILED", "RUNNING", "STOPPED", "TERMINAL"]


@dataclass(frozen=True)
class StudyStarted:
    study: str
    backend: str
    algorithm: str
    space: SearchSpace
    attrs: dict[str, str] = field(default_factory=dict)  # e.g. the Vertex job's resource name


@dataclass(frozen=True)
class TrialStarted:
    trial_id: str
    number: int  # 1-based order of creation within the study
    params: dict[str, Any]  # cast to their declared types
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Measured:
    trial_id: str
    step: int  # epoch number, 1-based, as the trainer reported it (hypertune global_step)
    value: float  # the space's metric tag
    timestamp: float = 0.0


@dataclass(frozen=True)
class TrialEnded:
    trial_id: str
    status: str  # COMPLETED, FAILED or STOPPED
    final_value: float | None = None  # by the study's measurement selection
    reason: str = ""  # failure reason (tail of stderr, NaN, early stopping...)


@dataclass(frozen=True)
class StudyEnded:
    study: str
    status: str  # COMPLETED, FAILED or STOPPED (Ctrl-C)
    best_trial_id: str | None = None
    best_value: float | None = None
    reason: str = ""


Event = StudyStarted | TrialStarted | Measured | TrialEnded | StudyEnded
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


@dataclass(frozen=True)
class FinalizeResult:
    model_dir: Path  # local directory holding the exported model
    measurements: list[tuple[int, float]]  # per-epoch (step, metric)
    metrics_file: Path | None = None  # JSON of final/test metrics written by the trainer, if any
    attrs: dict[str, str] = field(default_factory=dict)


class Backend(abc.ABC):
    """Runs a study and emits events; finalize retrains one parameter set to completion.

    A backend is built from its own typed settings (see backends/registry.py), so everything
    backend-specific (an interpreter, a seed, a GCP project) lives there, not in the requests.
    """

    name: str

    def preflight(self, request: StudyRequest) -> None:  # noqa: B027 - optional hook
        """Refuse, before the study's record exists, what this backend would fail on later
        (a trainer that does not take the parameters, an unreachable endpoint...)."""

    def record(self) -> dict[str, Any]:
        """What the study record keeps of this backend's settings, so that `--resume`,
        `attach` and `finalize` rebuild the same backend with no flags given again."""
        return {}

    @abc.abstractmethod
    def run(self, request: StudyRequest, sink: Sink) -> StudyEnded:
        """Run the study to its end, emitting every event to `sink` as it happens."""

    @abc.abstractmethod
    def finalize(self, request: FinalizeRequest, sink: Sink) -> FinalizeResult:
        """Train `request.params` with the space's finalize args; emit Measured events for it."""
