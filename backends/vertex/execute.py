"""Executions on Vertex: each one a CustomJob beside the study's tuning job (a tuning job takes
no trials it did not suggest), up to parallel_trials at once: the baseline (the trainer's
defaults at several seeds), the confirmation of the top trials, and finalize (finalize.py).

Per-epoch measurements: Vertex keeps none for a plain CustomJob, so the trainer's hypertune
file is pointed (CLOUD_ML_HP_METRIC_FILE) at <base>/hypertune/output.metrics through Vertex's
Cloud Storage FUSE mount (/gcs/BUCKET/...) and read back through the storage API once the job
has ended; a service without the mount leaves no file, and the execution has no score.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from backends.vertex.follow import JOB_SUCCEEDED, JOB_TERMINAL
from backends.vertex.packaging import JobSpec
from backends.vertex.session import VertexSession
from trialkit.errors import BackendError, interruption
from trialkit.gcs import split_gs
from trialkit.hypertune_file import MetricTail, select_final

log = logging.getLogger(__name__)

METRIC_FILE = "hypertune/output.metrics"


@dataclass
class _Running:
    execution: Execution
    name: str  # the CustomJob's resource name
    base: str  # its base output directory (gs://...)
    local: Path  # where its files come back to on this machine


def run_executions(
    session: VertexSession, executions: list[Execution], sink: Sink, parallel: int = 1
) -> list[ExecutionResult]:
    """Run every execution as a CustomJob, at most `parallel` at once; emit ExecutionStarted,
    its Measured events and ExecutionEnded for each. Ctrl-C cancels the running jobs."""
    api = session.api()
    waiting, running = list(executions), []
    results: dict[str, ExecutionResult] = {}
    try:
        while waiting or running:
            while waiting and len(running) < max(1, parallel):
                running.append(_submit(session, waiting.pop(0), sink))
            for item in list(running):
                with session.explain(f"following {item.name}"):
                    job = api.get_custom_job(item.name)
                if int(job.state) in JOB_TERMINAL:
                    running.remove(item)
                    result = _ended(session, item, job, sink)
                    results[item.execution.id] = result
                    sink(ended_event(item.execution, result))
            if running:
                time.sleep(session.poll_s)
    except KeyboardInterrupt as exc:
        for item in running:
            log.warning("cancelling %s", item.name)
            api.cancel_custom_job(item.name)
            stopped = ExecutionResult(item.execution.id, STOPPED, None, (), interruption(exc))
            sink(ended_event(item.execution, stopped))
        raise
    return [results[e.id] for e in executions]


def base_dir(session: VertexSession, execution: Execution) -> tuple[str, Path]:
    """The job's base output directory and where its files come back to: finalize a fresh one
    per run (a model each time); the others their id's."""
    if execution.role == FINALIZE:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{session.staging_bucket}/dualtune/{execution.study}/finalize-{stamp}"
        return base, execution.workdir / "finalize" / stamp
    base = f"{session.staging_bucket}/dualtune/{execution.study}/{execution.id}"
    return base, execution.workdir / "executions" / execution.id


def fuse(uri: str) -> str:
    """gs://B/path as a trainer on Vertex sees it: /gcs/B/path (Cloud Storage FUSE)."""
    bucket, name = split_gs(uri)
    return f"/gcs/{bucket}/{name}"


def _submit(session: VertexSession, execution: Execution, sink: Sink) -> _Running:
    base, local = base_dir(session, execution)
    env = {"CLOUD_ML_HP_METRIC_FILE": fuse(f"{base}/{METRIC_FILE}"), **execution.env}
    spec = JobSpec(f"{execution.study}-{execution.id}", execution.trainer_args(), env, base)
    with session.explain("packaging the trainer"):
        job = session.trainer_job(execution.space.trainer, spec)
    session.place(job._gca_resource.job_spec)
    with session.explain(f"submitting the {execution.id} job of study {execution.study}"):
        name = session.api().create_custom_job(session.parent, job._gca_resource).name
    sink(started_event(execution, job=name, console_url=session.console_url(name)))
    log.info("%s: CustomJob %s", execution.id, name)
    return _Running(execution, name, base, local)


def _ended(session: VertexSession, item: _Running, job: Any, sink: Sink) -> ExecutionResult:
    """The result of an execution whose job ended: its measurements read back, its status."""
    space = item.execution.space
    curve = measurements(session, item, sink)
    final = select_final([v for _, v in curve], space.metric.minimize, space.measurement_selection)
    if int(job.state) != JOB_SUCCEEDED:
        message = (job.error.message or "no reason given").strip().splitlines()[0]
        status = FAILED
        url = session.console_url(item.name)
        logs = f"; see its logs at {url}" if url else ""
        reason = f"the job {item.name} ended {job.state.name}: {message}{logs}"
    elif final is None:
        status, reason = FAILED, f"the trainer reported no {space.metric.tag}"
    else:
        status, reason = COMPLETED, ""
    return ExecutionResult(
        item.execution.id,
        status,
        final,
        curve,
        reason,
        directory=str(item.local),
        job=item.name,
        console_url=session.console_url(item.name),
        model_uri=f"{item.base}/model",
    )


def measurements(session: VertexSession, item: _Running, sink: Sink) -> tuple:
    """The trainer's per-epoch reports, read from its hypertune file in Cloud Storage."""
    from google.api_core import exceptions

    uri = f"{item.base}/{METRIC_FILE}"
    bucket, name = split_gs(uri)
    path = item.local / METRIC_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with session.explain(f"reading the metric file {uri}"):
            session.storage().bucket(bucket).blob(name).download_to_filename(str(path))
    except (BackendError, exceptions.NotFound) as err:
        path.unlink(missing_ok=True)
        log.warning("no per-epoch metrics for %s (%s)", item.execution.id, err)
        return ()
    curve = {}
    for report in MetricTail(path, item.execution.space.metric.tag).poll():
        curve[report.step] = report.value
        sink(Measured(item.execution.id, report.step, report.value, report.timestamp))
    return tuple(sorted(curve.items()))
