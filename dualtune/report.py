"""Reading studies back from MLflow: their trials, best first (`dualtune trials`, `compare`,
finalize).

Layout: one experiment per search space (named after the space, tagged `dualtune.space`), one
parent run per study in it (tags `dualtune.study`, `dualtune.role=study`), one child run per
trial. Stores written when each study had its own experiment (named after the study) are read
the same way: a study is found by its parent run's tags, wherever that run lives.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualtune import study_record
from dualtune.display import number, sig
from dualtune.tracking import TAG, client, resolve_tracking_uri
from trialkit.errors import UserError

log = logging.getLogger(__name__)

SPACE_TAG = f"{TAG}space"  # on the space's experiment and on each study's parent run
PAGE = 5000  # runs per search_runs page
BULK_RUNS = 500  # run ids per bulk metric query (well under SQLite's variable limit)
REST_BULK_RUNS = 100  # the tracking server's limit for one get-history-bulk-interval call
REST_BULK_POINTS = 2500  # and its limit on points per run


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
    history: tuple[tuple[int, float], ...] = ()  # (step, value) of the study's metric, by step
    ended: int | None = None  # the run's end time (ms since the epoch), None while running


def quote(text: str) -> str:
    """A value inside a single-quoted MLflow search filter."""
    return text.replace("'", "\\'")


def space_experiments(mlflow_client: Any) -> list[str]:
    """Ids of the experiments dualtune made for search spaces."""
    found, token = [], None
    while True:
        page = mlflow_client.search_experiments(
            filter_string=f"tags.`{SPACE_TAG}` LIKE '%'", max_results=1000, page_token=token
        )
        found += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return found


def study_experiments(mlflow_client: Any, *names: str) -> list[str]:
    """Where a study's parent run may live: the space experiments, and the experiments named
    `names` (a study's own experiment, as stores of the earlier layout have)."""
    ids = space_experiments(mlflow_client)
    for name in names:
        old = mlflow_client.get_experiment_by_name(name)
        if old is not None and old.lifecycle_stage == "active" and old.experiment_id not in ids:
            ids.append(old.experiment_id)
    return ids


def find_study(mlflow_client: Any, study: str, source: str = "--study") -> Any:
    """The study's (latest) parent run, in whichever experiment holds it; `source` is what
    named it (a flag or a command), for the error."""
    ids = study_experiments(mlflow_client, study)
    parents = (
        mlflow_client.search_runs(
            ids,
            filter_string=f"tags.`{TAG}study` = '{quote(study)}' AND tags.`{TAG}role` = 'study'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if ids
        else []
    )
    if not parents:
        raise UserError(
            f"{source}: MLflow has no study {study!r}; check the study name and "
            f"--tracking-uri (or MLFLOW_TRACKING_URI)"
        )
    return parents[0]


def study_parents(mlflow_client: Any, experiment_id: str) -> list[Any]:
    """Every study's parent run in an experiment (the latest per study name), oldest first."""
    runs = all_runs(
        mlflow_client,
        [experiment_id],
        f"tags.`{TAG}role` = 'study'",
        order_by=["attributes.start_time DESC"],
    )
    latest: dict[str, Any] = {}
    for run in runs:
        latest.setdefault(run.data.tags.get(f"{TAG}study", run.info.run_name), run)
    return sorted(latest.values(), key=lambda r: r.info.start_time or 0)


def all_runs(
    mlflow_client: Any, experiment_ids: list[str], filter_string: str, order_by: Any = None
) -> list[Any]:
    """search_runs, every page."""
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs(
            experiment_ids, filter_string, max_results=PAGE, order_by=order_by, page_token=token
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def metric_histories(
    mlflow_client: Any, run_ids: list[str], key: str
) -> dict[str, tuple[tuple[int, float], ...]]:
    """Every run's (step, value) points of one metric, read in bulk: a few queries for a
    thousand runs instead of one round trip per run. The latest value wins on a repeated step."""
    store = mlflow_client._tracking_client.store  # the bulk reads are the store's, not the client's
    points: dict[str, dict[int, tuple[int, float]]] = {run_id: {} for run_id in run_ids}
    for metric_run, metric in _bulk(mlflow_client, store, run_ids, key):
        seen = points.setdefault(metric_run, {})
        if metric.step not in seen or seen[metric.step][0] <= metric.timestamp:
            seen[metric.step] = (metric.timestamp, metric.value)
    return {
        run_id: tuple((step, value) for step, (_, value) in sorted(by_step.items()))
        for run_id, by_step in points.items()
    }


def _bulk(mlflow_client: Any, store: Any, run_ids: list[str], key: str) -> Iterable[tuple]:
    chunks = [run_ids[i : i + BULK_RUNS] for i in range(0, len(run_ids), BULK_RUNS)]
    if hasattr(store, "get_metric_history_bulk"):  # SQL stores: one query per chunk
        for chunk in chunks:
            for m in store.get_metric_history_bulk(chunk, key, max_results=2**62):
                yield m.run_id, m  # a Metric that knows its run
        return
    if hasattr(store, "get_host_creds"):  # a tracking server: its UI's bulk endpoint
        try:
            yield from _rest_bulk(store, run_ids, key)
            return
        except Exception as exc:  # noqa: BLE001 - an older or restricted server: one by one
            log.debug("bulk metric history refused (%s); reading run by run", exc)
    for run_id in run_ids:
        for metric in mlflow_client.get_metric_history(run_id, key):
            yield run_id, metric


def _rest_bulk(store: Any, run_ids: list[str], key: str) -> list[tuple]:
    from mlflow.entities import Metric
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    endpoint = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
    found = []
    for i in range(0, len(run_ids), REST_BULK_RUNS):
        params = {
            "run_ids": run_ids[i : i + REST_BULK_RUNS],
            "metric_key": key,
            "max_results": REST_BULK_POINTS,
        }
        answer = http_request(store.get_host_creds(), endpoint, "GET", params=params)
        for m in verify_rest_response(answer, endpoint).json().get("metrics", []):
            metric = Metric(key, float(m["value"]), int(m["timestamp"]), int(m.get("step", 0)))
            found.append((m["run_id"], metric))
    return found


def metric_of(parent: Any) -> tuple[str, bool]:
    """(metric tag, minimize) from the parent run's `metric` param, e.g. 'val_rmse (minimize)'."""
    text = parent.data.params.get("metric", "val_rmse (minimize)")
    return text.split(" ")[0], not text.endswith("(maximize)")


def study_runs(mlflow_client: Any, study: str) -> tuple[Any, list[TrialRow]]:
    """The study's (latest) parent run and its trial rows, best first."""
    parent = find_study(mlflow_client, study)
    return parent, trial_rows(mlflow_client, parent)


def trial_rows(mlflow_client: Any, parent: Any) -> list[TrialRow]:
    """The parent's trials, best first, each with its metric history (read in bulk)."""
    children = all_runs(
        mlflow_client,
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    children = [run for run in children if f"{TAG}trial_id" in run.data.tags]
    metric, minimize = metric_of(parent)
    histories = metric_histories(mlflow_client, [r.info.run_id for r in children], metric)
    rows = [_row(run, histories.get(run.info.run_id, ())) for run in children]
    rows.sort(key=lambda r: _rank(r, minimize))
    return rows


def _row(run: Any, history: tuple[tuple[int, float], ...]) -> TrialRow:
    tags = run.data.tags
    final = tags.get(f"{TAG}final_value")
    return TrialRow(
        trial_id=tags[f"{TAG}trial_id"],
        number=int(tags.get(f"{TAG}trial_number", "0")),
        run_id=run.info.run_id,
        status=tags.get(f"{TAG}status", run.info.status),
        final=float(final) if final else None,
        epochs=len(history),
        params=dict(run.data.params),
        reason=tags.get(f"{TAG}failure_reason") or tags.get(f"{TAG}reason", ""),
        history=history,
        ended=run.info.end_time,
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


def param_text(text: str) -> str:
    """A recorded parameter (MLflow keeps text) for a table: numbers as display.number writes
    them, integers and the rest as they are."""
    try:
        int(text)
        return text
    except ValueError:
        pass
    try:
        return number(float(text))
    except ValueError:
        return text


def store_client(tracking_uri: str | None, source: str, study: str) -> tuple[str, Any]:
    """(URI, client) for reading; refuses a SQLite store that does not exist yet, since
    asking it would create an empty one. `source` and `study` name what was asked for."""
    uri, _ = resolve_tracking_uri(tracking_uri)
    db = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
    if db is not None and not db.exists():
        raise UserError(
            f"{source}: no MLflow store at {db} yet, so no study {study!r}; run `dualtune tune` "
            f"first or check --tracking-uri"
        )
    return uri, client(uri)


def print_trials(tracking_uri: str | None, workdir: Path, study: str | None) -> int:
    name = study or study_record.find(workdir, None).name
    _, mlflow_client = store_client(tracking_uri, "--study", name)
    parent, rows = study_runs(mlflow_client, name)
    metric, _ = metric_of(parent)
    print(
        f"study {name} ({parent.data.tags.get(TAG + 'backend', '?')}): {len(rows)} trials, "
        f"best first"
    )
    print(f"{'trial':>6} {'status':<10} {metric:>12} {'epochs':>6}  parameters")
    for row in rows:
        params = " ".join(f"{k}={param_text(v)}" for k, v in sorted(row.params.items()))
        print(f"{row.trial_id:>6} {row.status:<10} {sig(row.final):>12} {row.epochs:>6}  {params}")
        if row.status == "FAILED" and row.reason:
            print(f"{'':>6} reason: {row.reason.splitlines()[-1][:160]}")
    return 0
