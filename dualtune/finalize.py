"""`dualtune finalize`: retrain the best trial to completion; the MLflow recorder records it
(its run, metrics, model and registered version: FinalizeRecorder).

The best trial comes from MLflow (the one record both backends write), so a study tuned on
either backend can be finalized on either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backends.base import Backend, FinalizeRequest
from dualtune import study_record
from dualtune.mlflow_recorder import FinalizeRecorder
from dualtune.overrides import recorded_space
from dualtune.report import best_trial, study_runs
from dualtune.tracking import client, resolve_tracking_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finalized:
    """What finalize made: the MLflow run, the registered model and its version."""

    run_id: str
    model: str
    version: str
    trial_id: str
    params: dict[str, Any]
    vertex_model: str | None = None  # the Vertex Model Registry's model@version, when uploaded


def finalize_study(
    record: study_record.StudyRecord,
    backend: Backend,
    extra: tuple[str, ...],
    env: dict[str, str],
    tracking_uri: str | None,
    say: Callable[[str], None],
    register: bool = True,
) -> Finalized:
    """Retrain the study's best trial with `backend`, record it in MLflow, register it."""
    uri, _ = resolve_tracking_uri(tracking_uri)
    meta = record.meta()
    space = recorded_space(record.space_file, meta)
    mlflow_client = client(uri)
    parent, rows = study_runs(mlflow_client, record.name)
    best = best_trial(rows)
    params = space.cast_values(best.params)
    request = FinalizeRequest(
        record.name, space, params, record.path.resolve(), extra, env, best.trial_id, register
    )
    say(
        f"finalizing study {record.name}: trial {best.trial_id} ({space.metric.tag}="
        f"{best.final:.4g}) {params}"
    )
    recorder = FinalizeRecorder(mlflow_client, parent, best, params, backend.name, space.metric.tag)
    try:
        result = backend.finalize(request, recorder.handle)
    except BaseException:
        recorder.failed()
        raise
    version = recorder.finished(result)
    vertex = f"{result.registry_model}@{result.registry_version}" if result.registry_model else None
    return Finalized(recorder.run_id, record.name, version, best.trial_id, params, vertex)
