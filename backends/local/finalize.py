"""Finalize on the local machine: the winner's parameters (none for the guess), the finalize
args, one trainer process: one execution (backends/local/execute.py) of role finalize."""

from __future__ import annotations

from backends.base import (
    COMPLETED,
    STOPPED,
    FinalizeRequest,
    FinalizeResult,
    Sink,
    finalize_execution,
    measured_only,
)
from backends.local.execute import run_executions
from trialkit.errors import BackendError


def run_finalize(request: FinalizeRequest, sink: Sink, python: str | None = None) -> FinalizeResult:
    (result,) = run_executions([finalize_execution(request)], measured_only(sink), python)
    if result.status == STOPPED:
        raise KeyboardInterrupt
    if result.status != COMPLETED and not result.reason.startswith("the trainer reported no"):
        raise BackendError(f"finalize failed ({result.reason})")
    assert result.model_dir is not None
    return FinalizeResult(
        result.model_dir,
        list(result.measurements),
        result.metrics_file,
        directory=result.directory,
    )
