"""Executions on Vertex: each one a CustomJob beside the study's tuning job (a tuning job takes
no trials it did not suggest), up to parallel_trials at once: the baseline (the trainer's
defaults at several seeds) and the confirmation of the top trials.

Per-epoch measurements: Vertex keeps none for a plain CustomJob, so the trainer's hypertune
file is pointed (CLOUD_ML_HP_METRIC_FILE) into the job's output directory: with an emulator on
this machine that is a local path, tailed while the job runs; on Vertex it is the job's Cloud
Storage FUSE path (/gcs/<bucket>/...), read back through the storage API when the job ends.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import (
    COMPLETED,
    FAILED,
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
from trialkit.hypertune_file import MetricTail, select_final

log = logging.getLogger(__name__)

METRICS = "hypertune/output.metrics"


@dataclass
class _Running:
    execution: Execution
    name: str  # the CustomJob's resource name
    base: str  # its base output directory (gs://...)
    tail: MetricTail | None  # None: read the metrics file when the job ends
    values: dict[int, float]


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
                _take(item, sink)
                if int(job.state) in JOB_TERMINAL:
                    running.remove(item)
                    result = _ended(session, item, job, sink)
                    results[item.execution.id] = result
                    sink(ended_event(item.execution, result))
            if running:
                time.sleep(session.poll_s)
    except KeyboardInterrupt:
        for item in running:
            log.warning("cancelling %s", item.name)
            api.cancel_custom_job(item.name)
            stopped = ExecutionResult(item.execution.id, STOPPED, None, (), "interrupted (Ctrl-C)")
            sink(ended_event(item.execution, stopped))
        raise
    return [results[e.id] for e in executions]


def _submit(session: VertexSession, execution: Execution, sink: Sink) -> _Running:
    space = execution.space
    base = f"{session.staging_bucket}/dualtune/{execution.study}/{execution.id}"
    env = dict(execution.env)
    tail = None
    if session.local_root is not None:
        metric_file = session.local_path(f"{base}/{METRICS}")
        tail = MetricTail(metric_file, space.metric.tag)
    else:
        metric_file = Path("/gcs") / f"{base}/{METRICS}"[len("gs://") :]
    env["CLOUD_ML_HP_METRIC_FILE"] = str(metric_file)
    spec = JobSpec(f"{execution.study}-{execution.id}", execution.trainer_args(), env, base)
    with session.explain("packaging the trainer"):
        job = session.trainer_job(space.trainer, spec)
    session.place(job._gca_resource.job_spec)
    with session.explain(f"submitting the {execution.id} job of study {execution.study}"):
        name = session.api().create_custom_job(session.parent, job._gca_resource).name
    console = session.console_url(name)
    sink(started_event(execution, job=name, console_url=console))
    log.info("%s: CustomJob %s", execution.id, name)
    return _Running(execution, name, base, tail, {})


def _take(item: _Running, sink: Sink) -> None:
    for report in item.tail.poll() if item.tail else ():
        item.values[report.step] = report.value
        sink(Measured(item.execution.id, report.step, report.value, report.timestamp))


def _ended(session: VertexSession, item: _Running, job: Any, sink: Sink) -> ExecutionResult:
    """The result of an execution whose job ended."""
    if item.tail is None:
        item.tail = _read_back(session, f"{item.base}/{METRICS}", item.execution.space.metric.tag)
    _take(item, sink)
    space = item.execution.space
    values = [v for _, v in sorted(item.values.items())]
    final = select_final(values, space.metric.minimize, space.measurement_selection)
    if int(job.state) != JOB_SUCCEEDED:
        message = (job.error.message or "no reason given").strip().splitlines()[0]
        status, reason = FAILED, f"the job ended {job.state.name}: {message}"
    elif final is None:
        status, reason = FAILED, f"the trainer reported no {space.metric.tag}"
    else:
        status, reason = COMPLETED, ""
    return ExecutionResult(
        item.execution.id,
        status,
        final,
        tuple(sorted(item.values.items())),
        reason,
        job=item.name,
        console_url=session.console_url(item.name),
        model_uri=f"{item.base}/model",
    )


def _read_back(session: VertexSession, uri: str, tag: str) -> MetricTail | None:
    """The job's hypertune file, downloaded (Vertex: the trainer wrote it through /gcs/)."""
    from google.cloud import storage

    bucket_name, _, blob_name = uri[len("gs://") :].partition("/")
    target = Path(tempfile.mkdtemp(prefix="dualtune-metrics-")) / "output.metrics"
    with session.explain(f"reading the measurements at {uri}"):
        client = storage.Client(project=session.project, credentials=session.credentials)
        blob = client.bucket(bucket_name).blob(blob_name)
        if not blob.exists():
            log.warning("%s: the job wrote no measurements", uri)
            return None
        blob.download_to_filename(str(target))
    return MetricTail(target, tag)
