"""Build MLflow stores for tests: studies recorded through the real recorder (the current
layout: one experiment per search space), and a study as the earlier layout recorded it (one
experiment named after the study, trial runs named `trial-N`)."""

from __future__ import annotations

import dataclasses

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from backends.base import Measured, StudyEnded, StudyStarted, TrialEnded, TrialStarted
from dualtune.mlflow_recorder import MlflowRecorder
from search_spaces.loader import load_space
from tests.conftest import FIXTURES


def toy_space(**changes):
    """The toy space (name: toy, metric val_rmse, minimize), with `changes` (name, metric)."""
    return dataclasses.replace(load_space(FIXTURES / "toy.yaml"), **changes)


def record_study(
    uri: str,
    study: str,
    backend: str,
    curves: dict[str, tuple[str, list[float]]],
    key: str = "",
    **space_changes,
) -> None:
    """A study through the real recorder: curves = {trial id: (status, values per epoch)}."""
    recorder = MlflowRecorder(uri)
    space = toy_space(**space_changes)
    recorder.handle(StudyStarted(study, backend, "random", space, workdir=key or None))
    for number, (trial_id, (status, values)) in enumerate(curves.items(), start=1):
        recorder.handle(TrialStarted(trial_id, number, {"x": 0.1 * number, "units": 8}))
        for step, value in enumerate(values, start=1):
            recorder.handle(Measured(trial_id, step, value))
        final = min(values) if values and status != "FAILED" else None
        recorder.handle(TrialEnded(trial_id, status, final, "boom" if status == "FAILED" else ""))
    recorder.handle(StudyEnded(study, "COMPLETED"))


def old_layout_study(uri: str, study: str, curves: dict[str, list[float]], key: str) -> str:
    """A completed local study exactly as the earlier recorder wrote it; its experiment id."""
    client = MlflowClient(uri)
    experiment = client.create_experiment(study)
    tags = {
        "dualtune.study": study,
        "dualtune.study_key": key,
        "dualtune.backend": "local",
        "dualtune.algorithm": "random",
        "dualtune.role": "study",
        "dualtune.workdir": key,
    }
    parent = client.create_run(experiment, run_name=study, tags=tags).info.run_id
    client.log_batch(parent, params=[Param("metric", "val_rmse (minimize)")])
    best = None
    for number, (trial_id, values) in enumerate(curves.items(), start=1):
        child_tags = {
            "mlflow.parentRunId": parent,
            "dualtune.trial_id": trial_id,
            "dualtune.trial_number": str(number),
            "dualtune.role": "trial",
        }
        run = client.create_run(experiment, run_name=f"trial-{number}", tags=child_tags)
        run_id = run.info.run_id
        final = min(values)
        client.log_batch(
            run_id,
            metrics=[Metric("val_rmse", v, 1000 + s, s) for s, v in enumerate(values, start=1)],
            params=[Param("x", str(0.1 * number)), Param("units", "8"), Param("act", "relu")],
            tags=[
                RunTag("dualtune.status", "COMPLETED"),
                RunTag("dualtune.final_value", repr(final)),
            ],
        )
        client.set_terminated(run_id, "FINISHED")
        best = final if best is None else min(best, final)
        client.log_metric(parent, "best_val_rmse", best, step=number)
    client.set_terminated(parent, "FINISHED")
    return experiment
