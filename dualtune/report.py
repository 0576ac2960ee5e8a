"""Reading a study back from MLflow: its trials, best first (`dualtune trials`, finalize)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualtune import studies
from dualtune.tracking import TAG, client, resolve_tracking_uri
from search_spaces.errors import UserError


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    number: int
    run_id: str
    status: str
    final: float | None
    epochs: int
    params: dict[str, str]
    reason: str


def study_runs(mlflow_client: Any, study: str) -> tuple[Any, list[TrialRow]]:
    """The study's (latest) parent run and its trial rows."""
    experiment = mlflow_client.get_experiment_by_name(study)
    if experiment is None:
        raise UserError(
            f"--study: MLflow has no study {study!r}; check --study and "
            f"--tracking-uri (or MLFLOW_TRACKING_URI)"
        )
    parents = mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG}role` = 'study'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not parents:
        raise UserError(f"--study: MLflow has no study run in experiment {study!r}")
    parent = parents[0]
    children = mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        max_results=10000,
    )
    rows = [_row(mlflow_client, run) for run in children if f"{TAG}trial_id" in run.data.tags]
    minimize = parent.data.params.get("metric", "(minimize)").endswith("(minimize)")
    rows.sort(key=lambda r: _rank(r, minimize))
    return parent, rows


def _row(mlflow_client: Any, run: Any) -> TrialRow:
    tags = run.data.tags
    final = tags.get(f"{TAG}final_value")
    metric = next(iter(run.data.metrics), None)
    epochs = len(mlflow_client.get_metric_history(run.info.run_id, metric)) if metric else 0
    return TrialRow(
        trial_id=tags[f"{TAG}trial_id"],
        number=int(tags.get(f"{TAG}trial_number", "0")),
        run_id=run.info.run_id,
        status=tags.get(f"{TAG}status", run.info.status),
        final=float(final) if final else None,
        epochs=epochs,
        params=dict(run.data.params),
        reason=tags.get(f"{TAG}failure_reason") or tags.get(f"{TAG}reason", ""),
    )


def _rank(row: TrialRow, minimize: bool) -> tuple:
    usable = row.status in ("COMPLETED", "STOPPED") and row.final is not None
    value = (row.final if minimize else -row.final) if usable else 0.0
    return (not usable, value, row.number)


def best_trial(rows: list[TrialRow]) -> TrialRow:
    for row in rows:
        if row.status in ("COMPLETED", "STOPPED") and row.final is not None:
            return row
    raise UserError("--study: the study has no completed trial to finalize; run more trials")


def print_trials(tracking_uri: str | None, workdir: Path, study: str | None) -> int:
    uri, _ = resolve_tracking_uri(tracking_uri)
    name = study or studies.find(workdir, None).name
    db = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
    if db is not None and not db.exists():  # asking would create an empty store
        raise UserError(
            f"--study: no MLflow store at {db} yet, so no study {name!r}; run `dualtune tune` "
            f"first or check --tracking-uri"
        )
    parent, rows = study_runs(client(uri), name)
    metric = parent.data.params.get("metric", "metric").split(" ")[0]
    print(
        f"study {name} ({parent.data.tags.get(TAG + 'backend', '?')}): {len(rows)} trials, "
        f"best first"
    )
    print(f"{'trial':>6} {'status':<10} {metric:>12} {'epochs':>6}  parameters")
    for row in rows:
        final = f"{row.final:.5f}" if row.final is not None else "-"
        params = " ".join(f"{k}={v}" for k, v in sorted(row.params.items()))
        print(f"{row.trial_id:>6} {row.status:<10} {final:>12} {row.epochs:>6}  {params}")
        if row.status == "FAILED" and row.reason:
            print(f"{'':>6} reason: {row.reason.splitlines()[-1][:160]}")
    return 0
