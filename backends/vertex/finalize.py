"""Finalize on Vertex: one CustomJob with the finalize args and the best parameters.

The model is what the trainer wrote to AIP_MODEL_DIR, i.e. <base output dir>/model/. With an
emulator on this machine that directory is local already (session.local_path); on Vertex it is
downloaded into the study directory, where dualtune/finalize.py registers it.

Per-epoch measurements: Vertex keeps none for a plain CustomJob (only tuning trials have
measurements). With an emulator the trainer's hypertune file is pointed (CLOUD_ML_HP_METRIC_FILE)
at a local path and tailed while the job runs, so the finalize run gets its curve there.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from backends.base import FinalizeRequest, FinalizeResult, Measured, Sink
from backends.vertex.follow import JOB_SUCCEEDED, JOB_TERMINAL
from backends.vertex.packaging import JobSpec
from backends.vertex.session import VertexSession
from trialkit.errors import BackendError
from trialkit.hypertune_file import MetricTail

log = logging.getLogger(__name__)


def run_finalize(backend: VertexSession, request: FinalizeRequest, sink: Sink) -> FinalizeResult:
    api = backend.api()
    space = request.space
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{backend.staging_bucket}/dualtune/{request.study}/finalize-{stamp}"
    env = dict(request.env)
    tail = None
    if backend.local_root is not None:
        metric_file = _local(backend, f"{base}/hypertune/output.metrics")
        env["CLOUD_ML_HP_METRIC_FILE"] = str(metric_file)
        tail = MetricTail(metric_file, space.metric.tag)
    args = (*space.trainer.finalize_args, *request.extra_args, *space.flags(request.params))
    spec = JobSpec(f"{request.study}-finalize", args, env, base)
    with backend.explain("packaging the trainer"):
        job = backend.trainer_job(space.trainer, spec)
    backend.place(job._gca_resource.job_spec)
    with backend.explain(f"submitting the finalize job of study {request.study}"):
        name = api.create_custom_job(backend.parent, job._gca_resource).name
    log.warning("finalize job %s: %s", name, backend.console_url(name))
    measurements = _wait(backend, name, tail, sink)
    model_uri = f"{base}/model"
    if tail is None:
        log.warning(
            "Vertex keeps no per-epoch metrics for a plain CustomJob: the finalize run records "
            "only the trainer's metrics.json"
        )
        model_dir = _download(backend, model_uri, request.workdir / "finalize" / stamp / "model")
    else:
        model_dir = _local(backend, model_uri)
    metrics = model_dir / "metrics.json"
    return FinalizeResult(
        model_dir,
        measurements,
        metrics if metrics.is_file() else None,
        job=name,
        console_url=backend.console_url(name),
        model_uri=model_uri,
    )


def _wait(
    backend: VertexSession, name: str, tail: MetricTail | None, sink: Sink
) -> list[tuple[int, float]]:
    """Poll the job to its end, emitting each new epoch; Ctrl-C cancels it."""
    api = backend.api()
    measurements: list[tuple[int, float]] = []

    def take() -> None:
        for report in tail.poll() if tail else ():
            measurements.append((report.step, report.value))
            sink(Measured("finalize", report.step, report.value, report.timestamp))

    try:
        while True:
            with backend.explain(f"following {name}"):
                job = api.get_custom_job(name)
            take()
            if int(job.state) in JOB_TERMINAL:
                break
            time.sleep(backend.poll_s)
    except KeyboardInterrupt:
        log.warning("cancelling %s", name)
        api.cancel_custom_job(name)
        raise
    take()
    if int(job.state) != JOB_SUCCEEDED:
        message = (job.error.message or "no reason given").strip().splitlines()[0]
        raise BackendError(
            f"the finalize job {name} ended {job.state.name}: {message}; "
            f"see its logs at {backend.console_url(name)}"
        )
    return measurements


def _local(backend: VertexSession, uri: str) -> Path:
    return backend.local_path(uri)


def _download(backend: VertexSession, uri: str, target: Path) -> Path:
    """Copy every object under `uri`/ into `target`, keeping relative paths."""
    from google.cloud import storage

    bucket_name, _, prefix = uri[len("gs://") :].partition("/")
    prefix = prefix.rstrip("/") + "/"
    with backend.explain(f"downloading the model from {uri}"):
        client = storage.Client(project=backend.project, credentials=backend.credentials)
        count = 0
        for blob in client.list_blobs(bucket_name, prefix=prefix):
            relative = blob.name[len(prefix) :]
            if not relative or relative.endswith("/"):
                continue
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(path))
            count += 1
    if not count:
        raise BackendError(
            f"the finalize job wrote nothing under {uri}; a trainer must export its model to "
            f"AIP_MODEL_DIR"
        )
    return target
