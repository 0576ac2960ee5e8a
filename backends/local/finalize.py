"""Finalize on the local machine: the best parameters, the finalize args, one trainer process."""

from __future__ import annotations

import time

from backends.base import FinalizeRequest, FinalizeResult, Measured, Sink
from backends.local.process import (
    TrialCommand,
    TrialProcess,
    base_env,
    python_argv,
    trial_command,
)
from trialkit.errors import BackendError

POLL_S = 0.5


def finalize_command(request: FinalizeRequest, python: str | None = None) -> TrialCommand:
    trainer = request.space.trainer
    directory = request.workdir / "finalize" / time.strftime("%Y%m%d-%H%M%S")
    argv = python_argv(python, trainer.module, trainer.script)
    argv += [*trainer.finalize_args, *request.extra_args, *request.space.flags(request.params)]
    return trial_command(argv, directory, "finalize")


def run_finalize(request: FinalizeRequest, sink: Sink, python: str | None = None) -> FinalizeResult:
    command = finalize_command(request, python)
    env = base_env(request.env, request.space.trainer.module)
    proc = TrialProcess.start(command, request.space.metric.tag, env)
    measurements: list[tuple[int, float]] = []
    try:
        while True:
            code = proc.exit_code()
            for report in proc.poll_reports():
                measurements.append((report.step, report.value))
                sink(Measured("finalize", report.step, report.value, report.timestamp))
            if code is not None:
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        proc.kill()
        raise
    if code != 0:
        raise BackendError(f"finalize failed (exit status {code}): {proc.failure_reason()}")
    model_dir = command.directory / "model"
    metrics = model_dir / "metrics.json"
    return FinalizeResult(
        model_dir,
        measurements,
        metrics if metrics.exists() else None,
        directory=str(command.directory),
    )
