"""Finalize on the local machine: the winner's parameters (none for the guess), the finalize
args, one trainer process: one execution (backends/local/execute.py) of role finalize."""

from __future__ import annotations

from backends.base import (
    COMPLETED,
    FINALIZE,
    STOPPED,
    Execution,
    FinalizeRequest,
    FinalizeResult,
    Sink,
)
from backends.local.execute import run_executions
from trialkit.errors import BackendError


def finalize_execution(request: FinalizeRequest) -> Execution:
    """The finalize run as an execution: finalize args, extra args, the parameter flags."""
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


def run_finalize(request: FinalizeRequest, sink: Sink, python: str | None = None) -> FinalizeResult:
    (result,) = run_executions([finalize_execution(request)], _measured_only(sink), python)
    if result.status == STOPPED:
        raise KeyboardInterrupt
    if result.status != COMPLETED and not (result.reason.startswith("the trainer reported no")):
        raise BackendError(f"finalize failed ({result.reason})")
    assert result.model_dir is not None
    return FinalizeResult(
        result.model_dir,
        list(result.measurements),
        result.metrics_file,
        directory=result.directory,
    )


def _measured_only(sink: Sink) -> Sink:
    """Finalize's sink takes the epochs (as Measured events of trial "finalize") only."""
    from backends.base import Measured

    def handle(event: object) -> None:
        if isinstance(event, Measured):
            sink(event)

    return handle
