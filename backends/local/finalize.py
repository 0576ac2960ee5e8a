"""Finalize on the local machine: the best parameters, the finalize args, one trainer process."""

from __future__ import annotations

import os
import time

from backends.base import FinalizeRequest, FinalizeResult, Measured, Sink
from backends.local.process import TrialCommand, TrialProcess, python_argv
from dualtune.errors import BackendError

POLL_S = 0.5


def finalize_command(request: FinalizeRequest) -> TrialCommand:
    trainer = request.space.trainer
    directory = request.workdir / "finalize" / time.strftime("%Y%m%d-%H%M%S")
    argv = python_argv(request.python, trainer.module, trainer.script)
    argv += [*trainer.finalize_args, *request.extra_args, *request.space.flags(request.params)]
    env = {
        "CLOUD_ML_TRIAL_ID": "finalize",
        "CLOUD_ML_HP_METRIC_FILE": str(directory / "hypertune" / "output.metrics"),
        "AIP_MODEL_DIR": str(directory / "model"),
        "AIP_CHECKPOINT_DIR": str(directory / "checkpoints"),
        "AIP_TENSORBOARD_LOG_DIR": str(directory / "logs"),
    }
    return TrialCommand(tuple(argv), env, directory, directory / "hypertune" / "output.metrics")


def run_finalize(request: FinalizeRequest, sink: Sink) -> FinalizeResult:
    command = finalize_command(request)
    base_env = {**os.environ, **request.env}
    if request.space.trainer.module:
        base_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.getcwd(), base_env.get("PYTHONPATH", "")) if p
        )
    proc = TrialProcess.start(command, request.space.metric.tag, base_env, warm=None)
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
        {"dir": str(command.directory)},
    )
