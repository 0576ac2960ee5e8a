"""`dualtune finalize`: retrain the best trial to completion, record it, register the model.

The best trial comes from MLflow (the one record both backends write), so a study tuned on
either backend can be finalized on either.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from backends.base import FinalizeRequest, FinalizeResult, Measured
from dualtune import studies
from dualtune.report import best_trial, study_runs
from dualtune.tracking import TAG, client, resolve_tracking_uri
from dualtune.tune import parse_env, recorded_space
from search_spaces.errors import UserError

log = logging.getLogger(__name__)


def finalize(args: argparse.Namespace) -> int:
    env = parse_env(args.env)
    uri, artifacts = resolve_tracking_uri(args.tracking_uri)
    study = studies.find(args.workdir, args.study)
    meta = study.meta()
    space = recorded_space(study, meta)
    mlflow_client = client(uri)
    parent, rows = study_runs(mlflow_client, study.name)
    best = best_trial(rows)
    params = space.cast_values(best.params)
    extra = tuple(args.extra or meta.get("extra_args", []))
    request = FinalizeRequest(
        study.name, space, params, study.path.resolve(), extra, env, args.python, {"args": args}
    )
    print(
        f"finalizing study {study.name}: trial {best.trial_id} ({space.metric.tag}="
        f"{best.final:.5f}) {params}"
    )
    run_id = _start_run(mlflow_client, study.name, artifacts, parent, best, params, args.backend)
    recorder = _MetricSink(mlflow_client, run_id, space.metric.tag)
    try:
        result = _backend(args.backend).finalize(request, recorder)
    except BaseException:
        mlflow_client.set_terminated(run_id, status="FAILED")
        raise
    version = _record(mlflow_client, run_id, study.name, result, recorder)
    mlflow_client.set_terminated(run_id, status="FINISHED")
    print(f"finalized: MLflow run {run_id}; model {study.name} version {version} registered")
    return 0


def _backend(name: str):
    if name == "vertex":
        from dualtune.vertex_cli import vertex_backend_for_finalize

        return vertex_backend_for_finalize()
    from backends.local.backend import LocalBackend

    return LocalBackend()


class _MetricSink:
    """Per-epoch metrics of the finalize run, logged as they arrive."""

    def __init__(self, mlflow_client: Any, run_id: str, tag: str) -> None:
        self.client, self.run_id, self.tag = mlflow_client, run_id, tag
        self.steps: set[int] = set()

    def __call__(self, event: Any) -> None:
        if isinstance(event, Measured) and event.step not in self.steps:
            self.steps.add(event.step)
            ts = int((event.timestamp or time.time()) * 1000)
            self.client.log_metric(
                self.run_id, self.tag, event.value, timestamp=ts, step=event.step
            )


def _start_run(
    mlflow_client: Any,
    study: str,
    artifacts: str | None,
    parent: Any,
    best: Any,
    params: dict[str, Any],
    backend: str,
) -> str:
    from mlflow.entities import Param, RunTag

    experiment_id = parent.info.experiment_id  # where the study's runs are, whichever layout
    tags = {
        f"{TAG}role": "finalize",
        f"{TAG}study": study,
        f"{TAG}backend": backend,
        f"{TAG}study_run_id": parent.info.run_id,
        f"{TAG}best_trial_id": best.trial_id,
        f"{TAG}best_trial_run_id": best.run_id,
    }
    run = mlflow_client.create_run(experiment_id, run_name="finalize", tags=tags)
    mlflow_client.log_batch(
        run.info.run_id,
        params=[Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    return run.info.run_id


def _record(
    mlflow_client: Any, run_id: str, study: str, result: FinalizeResult, sink: _MetricSink
) -> str:
    """Final metrics, the exported model as an MLflow model, and its registered version."""
    for step, value in result.measurements:
        sink(Measured("finalize", step, value))
    if result.metrics_file is not None:
        metrics = json.loads(Path(result.metrics_file).read_text())
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                # val_* are per-epoch curves already: the trainer's closing values get a prefix.
                name = key if key.startswith("test_") else f"final_{key}"
                mlflow_client.log_metric(run_id, name, float(value))
    keras_file = Path(result.model_dir) / "model.keras"
    if not keras_file.is_file():
        raise UserError(
            f"finalize: the trainer wrote no {keras_file}; a trainer must export "
            f"its model to AIP_MODEL_DIR"
        )
    return _register(mlflow_client, run_id, study, keras_file)


def _register(mlflow_client: Any, run_id: str, name: str, keras_file: Path) -> str:
    import keras
    import mlflow.tensorflow

    model = keras.saving.load_model(keras_file)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model"
        mlflow.tensorflow.save_model(model, str(local))
        mlflow_client.log_artifacts(run_id, str(local), artifact_path="model")
    try:
        mlflow_client.create_registered_model(name)
    except Exception:  # noqa: BLE001 - it exists already: add a version to it
        log.debug("registered model %s exists", name)
    version = mlflow_client.create_model_version(
        name,
        source=f"runs:/{run_id}/model",
        run_id=run_id,
        tags={f"{TAG}study": name},
    )
    return version.version
