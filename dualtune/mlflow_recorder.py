"""Record trial events in MLflow: one experiment per search space, a parent run per study in it,
a child run per trial.

Idempotent by design: runs are found again by their tags (study key, trial id) and a metric point
is logged only for a step the run does not have yet, so re-attaching to a job, resuming a study
or replaying events after an outage never duplicates a run or a point.

Points are written in batches: a Measured event only queues its point; `flush` (called by the
recording lane whenever it has nothing else to do, so a point still lands as it happens) writes
each run's queued points with one log_batch per 1,000. Any other event flushes first, so MLflow
sees every run's points before the run's end. A batch is retried with the very same points
(value, step and timestamp), which MLflow's store takes once: a batch it took although its answer
was lost is not doubled.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from backends.base import (
    COMPLETED,
    FAILED,
    Event,
    Measured,
    StudyEnded,
    StudyStarted,
    TrialEnded,
    TrialStarted,
)
from dualtune.report import SPACE_TAG, all_runs, metric_histories, quote
from dualtune.tracking import TAG, client
from trialkit.errors import UserError

log = logging.getLogger(__name__)

RUN_STATUS = {COMPLETED: "FINISHED", FAILED: "FAILED", "STOPPED": "KILLED"}
BATCH = 1000  # MLflow's limit of metrics in one log_batch


class MlflowRecorder:
    def __init__(self, tracking_uri: str, artifact_location: str | None = None) -> None:
        self.uri = tracking_uri
        self.artifact_location = artifact_location
        self.client = client(tracking_uri)
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.tag = "val_rmse"
        self.runs: dict[str, str] = {}  # trial id -> run id
        self.steps: dict[str, set[int]] = {}  # run id -> steps already logged
        self.queued: dict[str, dict[int, Any]] = {}  # run id -> step -> Metric not yet written
        self.finished = 0
        self.best: float | None = None
        self.minimize = True
        self.study = self.backend = ""
        self.prefix = ""  # "<backend>/<study>": the parent's run name, its trials' name prefix

    def handle(self, event: Event) -> None:
        if isinstance(event, Measured):
            self._measured(event)
            if sum(map(len, self.queued.values())) >= BATCH:
                self.flush()
            return
        self.flush()  # a run's points before anything else about it
        if isinstance(event, StudyStarted):
            self._study_started(event)
        elif isinstance(event, TrialStarted):
            self._trial_started(event)
        elif isinstance(event, TrialEnded):
            self._trial_ended(event)
        elif isinstance(event, StudyEnded):
            self._study_ended(event)

    # -- study ------------------------------------------------------------------------------
    def _study_started(self, e: StudyStarted) -> None:
        self.tag, self.minimize = e.space.metric.tag, e.space.metric.minimize
        self.study, self.backend, self.prefix = e.study, e.backend, f"{e.backend}/{e.study}"
        key = e.key
        found = self._find_parent(key, e.space.name, e.study)
        if found is not None:  # resumed or re-attached: the study's run, wherever it lives
            self.experiment_id, self.parent_id = found.info.experiment_id, found.info.run_id
            if SPACE_TAG not in found.data.tags:  # the earlier layout's trials: "trial-N"
                self.prefix = ""
            self.client.update_run(self.parent_id, status="RUNNING")
            self._load_children()
            return
        self.experiment_id = ensure_experiment(
            self.client, e.space.name, self.artifact_location, {SPACE_TAG: e.space.name}
        )
        tags = {
            f"{TAG}study": e.study,
            f"{TAG}study_key": key,
            f"{TAG}backend": e.backend,
            f"{TAG}algorithm": e.algorithm,
            f"{TAG}role": "study",
            SPACE_TAG: e.space.name,
            **{f"{TAG}{k}": v for k, v in e.details().items()},
        }
        run = self.client.create_run(self.experiment_id, run_name=self.prefix, tags=tags)
        self.parent_id = run.info.run_id
        budget = e.space.budget
        self._log_params(
            self.parent_id,
            {
                "backend": e.backend,
                "algorithm": e.algorithm,
                "max_trials": budget.max_trials,
                "parallel_trials": budget.parallel_trials,
                "max_failed_trials": budget.max_failed_trials,
                "metric": f"{e.space.metric.tag} ({e.space.metric.goal})",
            },
        )
        source = Path(e.space.source)
        if source.is_file():
            self.client.log_artifact(self.parent_id, str(source), artifact_path="search_space")

    def _find_parent(self, key: str, space: str, study: str) -> Any:
        """The study's parent run by its key: in the space's experiment, or in the study's own
        experiment where an earlier layout put it."""
        ids = [
            found.experiment_id
            for found in map(self.client.get_experiment_by_name, dict.fromkeys((space, study)))
            if found is not None and found.lifecycle_stage == "active"
        ]
        if not ids:
            return None
        runs = self.client.search_runs(
            ids,
            filter_string=f"tags.`{TAG}study_key` = '{quote(key)}' AND tags.`{TAG}role` = 'study'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def _load_children(self) -> None:
        """Re-attach: find the trial runs this study already has, and their logged steps."""
        children = all_runs(
            self.client, [self.experiment_id], f"tags.mlflow.parentRunId = '{self.parent_id}'"
        )
        children = [run for run in children if f"{TAG}trial_id" in run.data.tags]
        histories = metric_histories(self.client, [r.info.run_id for r in children], self.tag)
        for run in children:
            self.runs[run.data.tags[f"{TAG}trial_id"]] = run.info.run_id
            self.steps[run.info.run_id] = {step for step, _ in histories[run.info.run_id]}
            final = run.data.tags.get(f"{TAG}final_value")
            if run.data.tags.get(f"{TAG}status") in ("COMPLETED", "STOPPED") and final:
                self.finished += 1
                self._update_best(float(final))

    def _study_ended(self, e: StudyEnded) -> None:
        tags = {f"{TAG}status": e.status}
        if e.best_trial_id is not None:
            tags[f"{TAG}best_trial_id"] = e.best_trial_id
        if e.reason:
            tags[f"{TAG}reason"] = e.reason[:5000]
        self._set_tags(self.parent_id, tags)
        self.client.set_terminated(self.parent_id, status=RUN_STATUS.get(e.status, "FINISHED"))

    # -- trials -----------------------------------------------------------------------------
    def _trial_started(self, e: TrialStarted) -> None:
        run_id = self.runs.get(e.trial_id)
        tags = {f"{TAG}status": "RUNNING"}
        if run_id is not None:  # resumed or re-attached: continue the same run
            self._set_tags(run_id, tags)
            self.client.update_run(run_id, status="RUNNING")
            return
        tags.update(
            {
                "mlflow.parentRunId": self.parent_id,
                f"{TAG}trial_id": e.trial_id,
                f"{TAG}trial_number": str(e.number),
                f"{TAG}role": "trial",
                f"{TAG}study": self.study,
                f"{TAG}backend": self.backend,
                **{f"{TAG}{k}": v for k, v in e.details().items() if k != "pid"},
            }
        )
        name = f"{self.prefix}/trial-{e.number}" if self.prefix else f"trial-{e.number}"
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        self.runs[e.trial_id] = run_id
        self.steps[run_id] = set()
        self._log_params(run_id, e.params)

    def _measured(self, e: Measured) -> None:
        """Queue the point, unless the run has its step already (logged or queued)."""
        from mlflow.entities import Metric

        run_id = self.runs.get(e.trial_id)
        if run_id is None:
            return
        queued = self.queued.setdefault(run_id, {})
        if e.step in self.steps[run_id] or e.step in queued:
            return
        ts = int((e.timestamp or time.time()) * 1000)
        queued[e.step] = Metric(self.tag, e.value, ts, e.step)

    def flush(self) -> None:
        """Write every queued point (see the module docstring); raises if the store is down,
        keeping what is not written yet for the next call."""
        for run_id, queued in self.queued.items():
            while queued:
                steps = sorted(queued)[:BATCH]
                self.client.log_batch(run_id, metrics=[queued[s] for s in steps])
                self.steps[run_id].update(steps)
                for step in steps:
                    del queued[step]

    def _trial_ended(self, e: TrialEnded) -> None:
        run_id = self.runs.get(e.trial_id)
        if run_id is None:
            return
        tags = {f"{TAG}status": e.status}
        if e.final_value is not None:
            tags[f"{TAG}final_value"] = repr(e.final_value)
        if e.reason:
            tags[f"{TAG}failure_reason" if e.status == FAILED else f"{TAG}reason"] = e.reason[:5000]
        self._set_tags(run_id, tags)
        self.client.set_terminated(run_id, status=RUN_STATUS.get(e.status, "FINISHED"))
        if e.status != FAILED and e.final_value is not None:
            self.finished += 1
            self._update_best(e.final_value)
            self.client.log_metric(
                self.parent_id, f"best_{self.tag}", self.best, step=self.finished
            )

    # -- helpers ----------------------------------------------------------------------------
    def _update_best(self, value: float) -> None:
        if self.best is None or (value < self.best if self.minimize else value > self.best):
            self.best = value

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, _param(v)) for k, v in params.items()])

    def _set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def ensure_experiment(
    mlflow_client, name: str, artifact_location: str | None, tags: dict[str, str] | None = None
) -> str:
    """The experiment called `name` (restored if deleted, created if missing), with `tags`."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        return mlflow_client.create_experiment(name, artifact_location=artifact_location, tags=tags)
    if found.lifecycle_stage == "deleted":
        mlflow_client.restore_experiment(found.experiment_id)
    for key, value in (tags or {}).items():
        if found.tags.get(key) != value:
            mlflow_client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


class FinalizeRecorder:
    """The finalize run, in the experiment of the study it finalizes: linked by tags to the
    study's run and its best trial, the best parameters as params, the per-epoch metric as it
    arrives, the trainer's closing metrics, then the model logged and registered under the
    study's name."""

    def __init__(
        self,
        mlflow_client: Any,
        parent: Any,
        best: Any,
        params: dict[str, Any],
        backend: str,
        tag: str,
    ) -> None:
        from mlflow.entities import Param, RunTag

        self.client = mlflow_client
        tags = parent.data.tags
        self.study = tags.get(f"{TAG}study", parent.info.run_name)
        self.tag = tag
        self.steps: set[int] = set()
        run_tags = {
            f"{TAG}role": "finalize",
            f"{TAG}study": self.study,
            f"{TAG}backend": backend,
            f"{TAG}study_run_id": parent.info.run_id,
            f"{TAG}best_trial_id": best.trial_id,
            f"{TAG}best_trial_run_id": best.run_id,
        }
        name = f"{backend}/{self.study}/finalize"
        run = self.client.create_run(parent.info.experiment_id, run_name=name, tags=run_tags)
        self.run_id = run.info.run_id
        self.client.log_batch(
            self.run_id,
            params=[Param(k, _param(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in run_tags.items()],
        )

    def handle(self, event: Event) -> None:
        """A sink for the backend: each new epoch of the finalize run, logged at once."""
        if isinstance(event, Measured) and event.step not in self.steps:
            self.steps.add(event.step)
            ts = int((event.timestamp or time.time()) * 1000)
            self.client.log_metric(
                self.run_id, self.tag, event.value, timestamp=ts, step=event.step
            )

    def failed(self) -> None:
        self.client.set_terminated(self.run_id, status="FAILED")

    def finished(self, result: Any) -> str:
        """Closing metrics, the model, its registered version (returned); the run ends."""
        for step, value in result.measurements:
            self.handle(Measured("finalize", step, value))
        if result.metrics_file is not None:
            metrics = json.loads(Path(result.metrics_file).read_text())
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    # val_* are per-epoch curves already: the closing values get a prefix.
                    name = key if key.startswith("test_") else f"final_{key}"
                    self.client.log_metric(self.run_id, name, float(value))
        keras_file = Path(result.model_dir) / "model.keras"
        if not keras_file.is_file():
            self.failed()
            raise UserError(
                f"finalize: the trainer wrote no {keras_file}; a trainer must export "
                f"its model to AIP_MODEL_DIR"
            )
        version = self._register(keras_file)
        self.client.set_terminated(self.run_id, status="FINISHED")
        return version

    def _register(self, keras_file: Path) -> str:
        import tempfile

        import keras
        import mlflow.tensorflow

        model = keras.saving.load_model(keras_file)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model"
            mlflow.tensorflow.save_model(model, str(local))
            self.client.log_artifacts(self.run_id, str(local), artifact_path="model")
        try:
            self.client.create_registered_model(self.study)
        except Exception:  # noqa: BLE001 - it exists already: add a version to it
            log.debug("registered model %s exists", self.study)
        version = self.client.create_model_version(
            self.study,
            source=f"runs:/{self.run_id}/model",
            run_id=self.run_id,
            tags={f"{TAG}study": self.study},
        )
        return str(version.version)
