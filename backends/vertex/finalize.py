"""Finalize on Vertex: one CustomJob with the finalize args and the winner's parameters (none
when the guess won): one execution (backends/vertex/execute.py) of role finalize.

The model is what the trainer wrote to AIP_MODEL_DIR, i.e. <base output dir>/model/; it is
downloaded through the Cloud Storage API into the study directory, where dualtune/finalize.py
registers it. Per-epoch measurements come back as every execution's do (execute.py); a service
without the FUSE mount leaves no metric file, and the run then records only the trainer's
metrics.json.
"""

from __future__ import annotations

import logging
from pathlib import Path

from backends.base import (
    COMPLETED,
    FinalizeRequest,
    FinalizeResult,
    Sink,
    finalize_execution,
    measured_only,
)
from backends.vertex.execute import run_executions
from backends.vertex.session import VertexSession
from trialkit.errors import BackendError
from trialkit.gcs import split_gs

log = logging.getLogger(__name__)


def run_finalize(backend: VertexSession, request: FinalizeRequest, sink: Sink) -> FinalizeResult:
    (result,) = run_executions(backend, [finalize_execution(request)], measured_only(sink))
    if result.status != COMPLETED and not result.reason.startswith("the trainer reported no"):
        raise BackendError(f"finalize: {result.reason}")
    log.info("finalize job %s: %s", result.job, result.console_url or "")
    assert result.model_uri is not None and result.directory is not None
    model_dir = _download(backend, result.model_uri, Path(result.directory) / "model")
    metrics = model_dir / "metrics.json"
    return FinalizeResult(
        model_dir,
        list(result.measurements),
        metrics if metrics.is_file() else None,
        job=result.job,
        console_url=result.console_url,
        model_uri=result.model_uri,
    )


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
