"""Executions on the local machine: each one a trainer process, like a trial's, outside the
search (the baseline, the confirmation of the top trials, finalize). Several run at once, up to
the study's parallel_trials, each watched through its own hypertune file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from backends.base import (
    COMPLETED,
    FAILED,
    FINALIZE,
    STOPPED,
    Execution,
    ExecutionResult,
    Measured,
    Sink,
    ended_event,
    started_event,
)
from backends.local.process import (
    TrialCommand,
    TrialProcess,
    stderr_tail,
    trial_command,
)
from backends.trainer_check import base_env, python_argv
from trialkit.errors import interruption
from trialkit.hypertune_file import select_final

log = logging.getLogger(__name__)

POLL_S = 0.2


def execution_directory(execution: Execution) -> Path:
    """Where an execution's files go: finalize gets a fresh directory per run (a model each
    time); the others their id's, so a resumed study finds an interrupted one's checkpoints."""
    if execution.role == FINALIZE:
        return execution.workdir / "finalize" / time.strftime("%Y%m%d-%H%M%S")
    return execution.workdir / "executions" / execution.id


def execution_command(execution: Execution, python: str | None = None) -> TrialCommand:
    trainer = execution.space.trainer
    argv = python_argv(python, trainer.module, trainer.script) + list(execution.trainer_args())
    return trial_command(argv, execution_directory(execution), execution.id)


@dataclass
class _Running:
    execution: Execution
    proc: TrialProcess
    values: list[tuple[int, float]] = field(default_factory=list)


def run_executions(
    executions: list[Execution], sink: Sink, python: str | None = None, parallel: int = 1
) -> list[ExecutionResult]:
    """Run every execution, at most `parallel` at once; emit ExecutionStarted, its Measured
    events and ExecutionEnded for each. Ctrl-C kills the running ones and raises."""
    waiting, running = list(executions), []
    results: dict[str, ExecutionResult] = {}
    try:
        while waiting or running:
            while waiting and len(running) < max(1, parallel):
                running.append(_start(waiting.pop(0), sink, python))
            for item in list(running):
                code = item.proc.exit_code()
                _take(item, sink)
                if code is not None:
                    running.remove(item)
                    results[item.execution.id] = _ended(item, code)
                    sink(ended_event(item.execution, results[item.execution.id]))
            if running:
                time.sleep(POLL_S)
    except KeyboardInterrupt as exc:
        for item in running:
            item.proc.kill()
            result = ExecutionResult(
                item.execution.id, STOPPED, None, tuple(item.values), interruption(exc)
            )
            sink(ended_event(item.execution, result))
        raise
    return [results[e.id] for e in executions]


def _start(execution: Execution, sink: Sink, python: str | None) -> _Running:
    command = execution_command(execution, python)
    env = base_env(execution.env, execution.space.trainer.module)
    proc = TrialProcess.start(command, execution.space.metric.tag, env)
    sink(started_event(execution, directory=str(command.directory)))
    log.info("%s started: %s", execution.id, " ".join(command.argv))
    return _Running(execution, proc)


def _take(item: _Running, sink: Sink) -> None:
    for report in item.proc.poll_reports():
        item.values.append((report.step, report.value))
        sink(Measured(item.execution.id, report.step, report.value, report.timestamp))


def _ended(item: _Running, code: int) -> ExecutionResult:
    """The result of an execution whose process exited with `code`."""
    space = item.execution.space
    curve = dict(item.values)  # a re-reported step (a resumed run) keeps its latest value
    final = select_final(
        [v for _, v in sorted(curve.items())], space.metric.minimize, space.measurement_selection
    )
    directory = item.proc.command.directory
    if code != 0:
        head = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        tail = stderr_tail(directory / "stderr.log")
        status, reason = FAILED, f"{head}: {tail}" if tail else head
    elif final is None:
        status, reason = FAILED, f"the trainer reported no {space.metric.tag}"
    else:
        status, reason = COMPLETED, ""
    model_dir = directory / "model"
    metrics = model_dir / "metrics.json"
    return ExecutionResult(
        item.execution.id,
        status,
        final,
        tuple(sorted(curve.items())),
        reason,
        directory=str(directory),
        model_dir=model_dir,
        metrics_file=metrics if metrics.exists() else None,
    )
