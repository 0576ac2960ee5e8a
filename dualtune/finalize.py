"""`dualtune finalize`: retrain the study's winner to completion; the MLflow recorder records
it (its run, metrics, model and registered version: FinalizeRecorder).

The winner comes from MLflow (the one record both backends write), so a study tuned on either
backend can be finalized on either: the study run's WINNER tag, a trial id or `baseline` (the
guess won: the trainer's defaults are trained, with no parameter flags at all). A study recorded
before studies had a verdict has no such tag: its best trial is trained, as then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backends.base import Backend, FinalizeRequest
from dualtune import mlflow_layout as layout
from dualtune import study_record
from dualtune.mlflow_recorder import FinalizeRecorder
from dualtune.overrides import recorded_space
from dualtune.report import best_trial, study_runs
from dualtune.tracking import client, resolve_tracking_uri
from trialkit.errors import UserError

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
    best, why = winner(parent, rows)
    params = space.cast_values(best.params) if best is not None else {}
    winner_id = best.trial_id if best is not None else layout.WINNER_GUESS
    request = FinalizeRequest(
        record.name, space, params, record.path.resolve(), extra, env, winner_id, register
    )
    if best is None:
        say(f"finalizing study {record.name}: the guess won ({why}): the trainer's defaults")
    else:
        say(
            f"finalizing study {record.name}: trial {best.trial_id}, {why} ({space.metric.tag}="
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
    return Finalized(recorder.run_id, record.name, version, winner_id, params, vertex)


def winner(parent: Any, rows: list[Any]) -> tuple[Any, str]:
    """The trial to train (None: the guess) and why: the study's verdict, or for a study
    recorded without one its best trial."""
    trust = layout.study_trust(parent)
    if trust.winner is None:
        return best_trial(rows), "the best trial (the study has no verdict)"
    if trust.winner == layout.WINNER_GUESS:
        return None, "no trial beat it beyond noise"
    found = [row for row in rows if row.trial_id == trust.winner]
    if not found:
        raise UserError(
            f"--study: the study's winner, trial {trust.winner}, has no run in MLflow; "
            f"check --tracking-uri"
        )
    return found[0], "the study's confirmed winner"
