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
    BASELINE,
    CONFIRMATION,
    Event,
    ExecutionEnded,
    ExecutionStarted,
    Measured,
    StudyEnded,
    StudyStarted,
    StudyVerdict,
    TrialEnded,
    TrialStarted,
)
from dualtune import mlflow_layout as layout
from dualtune.tracking import client
from trialkit.errors import UserError
from trialkit.status import better, usable

log = logging.getLogger(__name__)

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
        # run id -> (metric key, step) -> Metric not yet written
        self.queued: dict[str, dict[tuple[str, int], Any]] = {}
        self.execution_steps: dict[tuple[str, str], set[int]] = {}  # (run id, key) -> steps
        self.loaded: set[str] = set()  # trial runs found in the store (resumed, re-attached)
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
        elif isinstance(event, ExecutionStarted):
            self._execution_started(event)
        elif isinstance(event, ExecutionEnded):
            self._execution_ended(event)
        elif isinstance(event, StudyVerdict):
            self._set_tags(self.parent_id, layout.verdict_tags(event))
        elif isinstance(event, StudyEnded):
            self._study_ended(event)

    # -- study ------------------------------------------------------------------------------
    def _study_started(self, e: StudyStarted) -> None:
        self.tag, self.minimize = e.space.metric.tag, e.space.metric.minimize
        self.study, self.backend = e.study, e.backend
        self.prefix = layout.study_run_name(e.backend, e.study)
        key = e.key
        found = layout.find_study_run_by_key(self.client, key, e.space.name, e.study)
        if found is not None:  # resumed or re-attached: the study's run, wherever it lives
            self.experiment_id, self.parent_id = found.info.experiment_id, found.info.run_id
            self.prefix = layout.trial_prefix(found, e.backend, e.study)
            self.client.update_run(self.parent_id, status="RUNNING")
            self._load_children(found)
            return
        self.experiment_id = layout.ensure_space_experiment(
            self.client, e.space.name, self.artifact_location
        )
        tags = {
            **layout.study_tags(e.study, key, e.backend, e.algorithm, e.space.name),
            **layout.detail_tags(e.details()),
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
                layout.METRIC_PARAM: layout.metric_param(e.space.metric.tag, e.space.metric.goal),
            },
        )
        source = Path(e.space.source)
        if source.is_file():
            self.client.log_artifact(self.parent_id, str(source), artifact_path="search_space")

    def _load_children(self, study_run: Any) -> None:
        """Re-attach: find the trial runs this study already has, and their logged steps."""
        for row in layout.trials(self.client, study_run, self.tag):
            self.runs[row.trial_id] = row.run_id
            self.steps[row.run_id] = {step for step, _ in row.history}
            self.loaded.add(row.run_id)
            if usable(row.status, row.final):
                self.finished += 1
                self._update_best(row.final)
        for row in layout.executions(self.client, study_run, self.tag):
            self.runs[row.execution_id] = row.run_id
            self.steps[row.run_id] = {step for step, _ in row.history}

    def _study_ended(self, e: StudyEnded) -> None:
        self._set_tags(self.parent_id, layout.study_end_tags(e.status, e.best_trial_id, e.reason))
        self.client.set_terminated(self.parent_id, status=layout.run_status(e.status))

    # -- trials -----------------------------------------------------------------------------
    def _trial_started(self, e: TrialStarted) -> None:
        run_id = self.runs.get(e.trial_id)
        tags = layout.trial_running_tags()
        if run_id is not None:  # resumed or re-attached: continue the same run
            self._set_tags(run_id, tags)
            self.client.update_run(run_id, status="RUNNING")
            return
        tags.update(
            {
                **layout.trial_tags(self.parent_id, e.trial_id, e.number, self.study, self.backend),
                **layout.detail_tags(e.details(), omit=("pid",)),
            }
        )
        name = layout.trial_run_name(self.prefix, e.number)
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        self.runs[e.trial_id] = run_id
        self.steps[run_id] = set()
        self._log_params(run_id, e.params)

    # -- baseline and confirmation runs -----------------------------------------------------
    def _execution_started(self, e: ExecutionStarted) -> None:
        """A child run per execution, found again by its id (a resumed study re-runs an
        execution that did not complete in the same run)."""
        tags = layout.trial_running_tags()
        run_id = self.runs.get(e.execution_id)
        if run_id is not None:
            self._set_tags(run_id, {**tags, **layout.detail_tags(e.details())})
            self.client.update_run(run_id, status="RUNNING")
            return
        role = {BASELINE: layout.ROLE_BASELINE, CONFIRMATION: layout.ROLE_CONFIRMATION}[e.role]
        tags.update(
            {
                **layout.execution_tags(
                    self.parent_id, e.execution_id, role, self.study, self.backend, e.trial_id
                ),
                **layout.detail_tags(e.details()),
            }
        )
        name = layout.execution_run_name(self.prefix, e.execution_id)
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.runs[e.execution_id] = run.info.run_id
        self.steps[run.info.run_id] = set()
        if e.params:
            self._log_params(run.info.run_id, e.params)

    def _execution_ended(self, e: ExecutionEnded) -> None:
        run_id = self.runs.get(e.execution_id)
        if run_id is None:
            return
        self._set_tags(run_id, layout.trial_end_tags(e.status, e.final_value, e.reason))
        self.client.set_terminated(run_id, status=layout.run_status(e.status))

    def _measured(self, e: Measured) -> None:
        """Queue the point, unless the run has its step already (logged or queued). One
        execution's point of a trial run several times goes under its own metric key."""
        from mlflow.entities import Metric

        run_id = self.runs.get(e.trial_id)
        if run_id is None:
            return
        key = self.tag if e.execution is None else layout.execution_metric(self.tag, e.execution)
        queued = self.queued.setdefault(run_id, {})
        if e.step in self._logged(run_id, key) or (key, e.step) in queued:
            return
        ts = int((e.timestamp or time.time()) * 1000)
        queued[(key, e.step)] = Metric(key, e.value, ts, e.step)

    def _logged(self, run_id: str, key: str) -> set[int]:
        """The steps a run has of `key`; an execution's, for a run found in the store, read
        from it once."""
        if key == self.tag:
            return self.steps[run_id]
        if (run_id, key) not in self.execution_steps:
            history = self.client.get_metric_history(run_id, key) if run_id in self.loaded else []
            self.execution_steps[run_id, key] = {m.step for m in history}
        return self.execution_steps[run_id, key]

    def flush(self) -> None:
        """Write every queued point (see the module docstring); raises if the store is down,
        keeping what is not written yet for the next call."""
        for run_id, queued in self.queued.items():
            while queued:
                points = sorted(queued)[:BATCH]
                self.client.log_batch(run_id, metrics=[queued[p] for p in points])
                for key, step in points:
                    self._logged(run_id, key).add(step)
                    del queued[key, step]

    def _trial_ended(self, e: TrialEnded) -> None:
        run_id = self.runs.get(e.trial_id)
        if run_id is None:
            return
        self._set_tags(run_id, layout.trial_end_tags(e.status, e.final_value, e.reason))
        self.client.set_terminated(run_id, status=layout.run_status(e.status))
        if usable(e.status, e.final_value):
            self.finished += 1
            self._update_best(e.final_value)
            self.client.log_metric(
                self.parent_id, layout.best_metric(self.tag), self.best, step=self.finished
            )

    # -- helpers ----------------------------------------------------------------------------
    def _update_best(self, value: float) -> None:
        if better(value, self.best, self.minimize):
            self.best = value

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, _param(v)) for k, v in params.items()])

    def _set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


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
        process: str = "",
    ) -> None:
        from mlflow.entities import Param, RunTag

        self.client = mlflow_client
        self.study = layout.study_of(parent)
        self.tag = tag
        self.steps: set[int] = set()
        run_tags = layout.finalize_tags(self.study, backend, parent.info.run_id, best, process)
        name = layout.finalize_run_name(backend, self.study)
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
        version = self._register(keras_file.parent)
        if result.registry_model:  # the backend's own model registry (vertex) has it too
            self.client.set_tag(self.run_id, layout.VERTEX_MODEL, result.registry_model)
            self.client.set_tag(self.run_id, layout.VERTEX_MODEL_VERSION, result.registry_version)
        self.client.set_terminated(self.run_id, status="FINISHED")
        return version

    def _register(self, model_dir: Path) -> str:
        """Log the servable pyfunc (dualtune/model_export.py) and register it as a version of
        the model named after the study."""
        import tempfile

        from dualtune.model_export import save_pyfunc

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model"
            save_pyfunc(model_dir, local)
            self.client.log_artifacts(self.run_id, str(local), artifact_path="model")
        try:
            self.client.create_registered_model(self.study)
        except Exception:  # noqa: BLE001 - it exists already: add a version to it
            log.debug("registered model %s exists", self.study)
        version = self.client.create_model_version(
            self.study,
            source=f"runs:/{self.run_id}/model",
            run_id=self.run_id,
            tags=layout.model_version_tags(self.study),
        )
        return str(version.version)


def settle_interrupted_finalize(mlflow_client: Any, run: Any, reason: str) -> str | None:
    """End a finalize run its process left RUNNING (killed): the version it registered, if it
    got that far (its model and metrics are whole then: registering is its last step), else
    None and the run FAILED with `reason`, so a finalize run again registers the only version."""
    from mlflow.entities import RunTag

    run_id = run.info.run_id
    versions = mlflow_client.search_model_versions(f"run_id = '{run_id}'")
    if versions:
        mlflow_client.set_terminated(run_id, status="FINISHED")
        return str(max(int(v.version) for v in versions))
    tags = [RunTag(k, v) for k, v in layout.interrupted_tags(reason).items()]
    mlflow_client.log_batch(run_id, tags=tags)
    mlflow_client.set_terminated(run_id, status="FAILED")
    return None
