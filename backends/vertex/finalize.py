"""Finalize on Vertex: one CustomJob with the finalize args and the best parameters.

The model is what the trainer wrote to AIP_MODEL_DIR, i.e. <base output dir>/model/; it is
downloaded through the Cloud Storage API into the study directory, where dualtune/finalize.py
registers it.

Per-epoch measurements: Vertex keeps none for a plain CustomJob (only tuning trials have
measurements). The trainer's hypertune file is pointed (CLOUD_ML_HP_METRIC_FILE) at
<base>/hypertune/output.metrics through Vertex's Cloud Storage FUSE mount (/gcs/BUCKET/...), and
read back through the storage API once the job has ended; a service without the mount leaves
no file, and the run then records only the trainer's metrics.json.
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
from trialkit.gcs import split_gs
from trialkit.hypertune_file import MetricTail

log = logging.getLogger(__name__)

METRIC_FILE = "hypertune/output.metrics"


def run_finalize(backend: VertexSession, request: FinalizeRequest, sink: Sink) -> FinalizeResult:
    api = backend.api()
    space = request.space
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{backend.staging_bucket}/dualtune/{request.study}/finalize-{stamp}"
    env = {"CLOUD_ML_HP_METRIC_FILE": _fuse(f"{base}/{METRIC_FILE}"), **request.env}
    args = (*space.trainer.finalize_args, *request.extra_args, *space.flags(request.params))
    spec = JobSpec(f"{request.study}-finalize", args, env, base)
    with backend.explain("packaging the trainer"):
        job = backend.trainer_job(space.trainer, spec)
    backend.place(job._gca_resource.job_spec)
    with backend.explain(f"submitting the finalize job of study {request.study}"):
        name = api.create_custom_job(backend.parent, job._gca_resource).name
    log.warning("finalize job %s: %s", name, backend.console_url(name))
    _wait(backend, name)
    local = request.workdir / "finalize" / stamp
    model_uri = f"{base}/model"
    model_dir = _download(backend, model_uri, local / "model")
    measurements = _measurements(backend, f"{base}/{METRIC_FILE}", local, space.metric.tag, sink)
    metrics = model_dir / "metrics.json"
    return FinalizeResult(
        model_dir,
        measurements,
        metrics if metrics.is_file() else None,
        job=name,
        console_url=backend.console_url(name),
        model_uri=model_uri,
    )


def _fuse(uri: str) -> str:
    """gs://B/path as a trainer on Vertex sees it: /gcs/B/path (Cloud Storage FUSE)."""
    bucket, name = split_gs(uri)
    return f"/gcs/{bucket}/{name}"


def _wait(backend: VertexSession, name: str) -> None:
    """Poll the job to its end; Ctrl-C cancels it."""
    api = backend.api()
    try:
        while True:
            with backend.explain(f"following {name}"):
                job = api.get_custom_job(name)
            if int(job.state) in JOB_TERMINAL:
                break
            time.sleep(backend.poll_s)
    except KeyboardInterrupt:
        log.warning("cancelling %s", name)
        api.cancel_custom_job(name)
        raise
    if int(job.state) != JOB_SUCCEEDED:
        message = (job.error.message or "no reason given").strip().splitlines()[0]
        raise BackendError(
            f"the finalize job {name} ended {job.state.name}: {message}; "
            f"see its logs at {backend.console_url(name)}"
        )


def _measurements(
    backend: VertexSession, uri: str, local: Path, tag: str, sink: Sink
) -> list[tuple[int, float]]:
    """The trainer's per-epoch reports, read from its hypertune file in Cloud Storage."""
    from google.api_core import exceptions

    bucket, name = split_gs(uri)
    path = local / METRIC_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with backend.explain(f"reading the metric file {uri}"):
            backend.storage().bucket(bucket).blob(name).download_to_filename(str(path))
    except (BackendError, exceptions.NotFound) as err:
        path.unlink(missing_ok=True)
        log.warning(
            "no per-epoch metrics for the finalize run (%s): Vertex keeps none for a plain "
            "CustomJob; only the trainer's metrics.json is recorded",
            err,
        )
        return []
    measurements = []
    for report in MetricTail(path, tag).poll():
        measurements.append((report.step, report.value))
        sink(Measured("finalize", report.step, report.value, report.timestamp))
    return measurements


def _download(backend: VertexSession, uri: str, target: Path) -> Path:
    """Copy every object under `uri`/ into `target`, keeping relative paths."""
    bucket_name, prefix = split_gs(uri)
    prefix = prefix.rstrip("/") + "/"
    with backend.explain(f"downloading the model from {uri}"):
        client = backend.storage()
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
