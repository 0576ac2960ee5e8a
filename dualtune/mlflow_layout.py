"""dualtune's layout in MLflow, in one module (as MLflow names its own system tags in
mlflow/utils/mlflow_tags.py): every `dualtune.*` tag key and role, the run and experiment naming
rules, and the queries that read them back. The writer (mlflow_recorder.py) and the readers
(report.py, compare.py, ui.py, finalize) all go through it, so they cannot drift.

The layout:
- one experiment per search space, named after the space and tagged SPACE;
- in it, one run per study (ROLE = ROLE_STUDY), named `<backend>/<study>`;
- a child run per trial (ROLE = ROLE_TRIAL), named `<backend>/<study>/trial-N`;
- the finalize run (ROLE = ROLE_FINALIZE), named `<backend>/<study>/finalize`, beside them.

Stores of the earlier layout are still read, resumed and re-attached: there each study had its
own experiment (named after the study, without SPACE), its study run was named after the study
and its trial runs `trial-N`. A study is found by its run's tags, wherever that run lives.

The tags, names and values here are what existing stores hold: change none of them. The only
use of MLflow's private API (the tracking client's store, and the UI's ajax endpoint for bulk
metric reads from a tracking server) is fenced in this module (`_store`, `_rest_bulk`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from trialkit.errors import UserError
from trialkit.status import COMPLETED, FAILED, RUNNING, STOPPED

log = logging.getLogger(__name__)

# -- tag keys ----------------------------------------------------------------------------------
TAG = "dualtune."
"""The prefix of every dualtune tag; only for keys a backend's event attributes name."""

SPACE = "dualtune.space"
"""The search space's name: on the space's experiment and on each study run in it (absent in
the earlier layout, which is how a study run of that layout is told apart)."""
STUDY = "dualtune.study"
"""The study's name: on its study run, its trial runs, its finalize run and model versions."""
STUDY_KEY = "dualtune.study_key"
"""What identifies one run of a study (its Vertex job, or its local workdir): how a resumed or
re-attached study finds its study run again."""
BACKEND = "dualtune.backend"
"""The backend that ran the study (local, vertex): on study, trial and finalize runs."""
ALGORITHM = "dualtune.algorithm"
"""The search algorithm, on the study run."""
ROLE = "dualtune.role"
"""What a run is: ROLE_STUDY, ROLE_TRIAL, ROLE_FINALIZE (ROLE_BASELINE, ROLE_CONFIRMATION)."""
STATUS = "dualtune.status"
"""A trial's status (trialkit.status.TrialStatus), or the study's at its end."""
REASON = "dualtune.reason"
"""Why a trial stopped or a study ended as it did (at most REASON_CHARS)."""
FAILURE_REASON = "dualtune.failure_reason"
"""Why a trial FAILED (at most REASON_CHARS)."""
BEST_TRIAL_ID = "dualtune.best_trial_id"
"""The best trial's id: on the study run at its end, and on the finalize run."""
TRIAL_ID = "dualtune.trial_id"
"""The backend's trial id, on a trial run: how a re-attached study finds its trial runs."""
TRIAL_NUMBER = "dualtune.trial_number"
"""The trial's number (1, 2, ...), as its run name `.../trial-N` has it."""
FINAL_VALUE = "dualtune.final_value"
"""The trial's final metric value, as Python's repr of the float."""
STUDY_RUN_ID = "dualtune.study_run_id"
"""On the finalize run: the run id of the study run it finalizes."""
BEST_TRIAL_RUN_ID = "dualtune.best_trial_run_id"
"""On the finalize run: the run id of the trial whose parameters it trained."""
VERTEX_MODEL = "dualtune.vertex_model"
"""On a vertex finalize run: the Vertex Model Registry model it uploaded a version of."""
VERTEX_MODEL_VERSION = "dualtune.vertex_model_version"
"""On a vertex finalize run: that version's id (the model's resource name@this id)."""

# Written from the backends' event attributes (TAG + the attribute's name):
WORKDIR = "dualtune.workdir"
"""A local study's working directory (its study key when it has no other)."""
SEED = "dualtune.seed"
"""A local study's seed."""
JOB = "dualtune.job"
"""A Vertex study's HyperparameterTuningJob resource name."""
CONSOLE_URL = "dualtune.console_url"
"""The Vertex console page of the study's job."""
OUTPUT_DIR = "dualtune.output_dir"
"""A Vertex study's base output directory (gs://...)."""
GPU = "dualtune.gpu"
"""A local trial's GPU (CUDA_VISIBLE_DEVICES), empty when none."""
DIR = "dualtune.dir"
"""A trial's output directory."""
MAPPED_INTO_SPACE = "dualtune.mapped_into_space"
"""A local trial whose suggestion the space did not hold: what was mapped into it."""
VERTEX_TRIAL_ID = "dualtune.vertex_trial_id"
"""A Vertex trial's own id."""
EXECUTIONS = "dualtune.executions"
"""A trial run several times (executions_per_trial > 1): how many executions it makes."""
EXECUTION_SEEDS = "dualtune.execution_seeds"
"""Their training seeds, comma-separated in execution order (absent without a seed flag)."""
TUNER_PREFIX = "dualtune.tuner/"
"""Keras Tuner's own values of a trial (Hyperband's tuner/epochs, tuner/bracket...)."""

FINALIZE_PROCESS = "dualtune.finalize_process"
"""On a finalize run: `host:pid:start` of the process that runs it, so a later finalize on the
same host can tell a run whose process is gone (killed) from one still running."""

# The study's verdict (the baseline, noise and confirmation of the winner; dualtune/trust.py):
WINNER = "dualtune.winner"
"""On the study run: the confirmed winner, a trial id or `baseline` (the trainer's defaults)."""
NOISE = "dualtune.noise"
"""On the study run: the spread of the baseline runs over training seeds."""
IMPROVEMENT = "dualtune.improvement"
"""On the study run: the winner's gain over the baseline, relative (%); 0 when the guess wins."""
GUESS_MEAN = "dualtune.guess_mean"
"""On the study run: the mean of the baseline runs (the guess's score)."""
VERDICT = "dualtune.verdict"
"""On the study run: the verdict in words (at most REASON_CHARS)."""
EXECUTION_ID = "dualtune.execution_id"
"""On a baseline or confirmation run: its id in the study (`baseline-1`, `confirm-03-2`)."""
CONFIRMS = "dualtune.confirms"
"""On a confirmation run: the id of the trial it re-runs."""
WINNER_GUESS = "baseline"
"""The WINNER value when the trainer's defaults (the guess) win."""

PARENT_RUN = "mlflow.parentRunId"
"""MLflow's own tag (mlflow_tags.MLFLOW_PARENT_RUN_ID): a trial run's study run."""

# -- role values -------------------------------------------------------------------------------
ROLE_STUDY = "study"
"""The study run: the parent of the study's trial runs."""
ROLE_TRIAL = "trial"
"""A trial run: a child of its study run."""
ROLE_FINALIZE = "finalize"
"""The finalize run: the best trial trained to completion, beside the study run."""
ROLE_BASELINE = "baseline"
"""A run of the trainer's defaults, the guess a study must beat: a study's child."""
ROLE_CONFIRMATION = "confirmation"
"""A re-run of a top trial with fresh seeds, confirming the winner: a study's child."""

# -- params, metrics, statuses -----------------------------------------------------------------
METRIC_PARAM = "metric"
"""The study run's param naming its metric and goal: `val_rmse (minimize)`."""
REASON_CHARS = 5000  # a reason tag keeps its first characters: MLflow limits a tag's value
RUN_STATUS = {COMPLETED: "FINISHED", FAILED: "FAILED", STOPPED: "KILLED"}  # MLflow's run status
PAGE = 5000  # runs per search_runs page
BULK_RUNS = 500  # run ids per bulk metric query (well under SQLite's variable limit)
REST_BULK_RUNS = 100  # the tracking server's limit for one get-history-bulk-interval call
REST_BULK_POINTS = 2500  # and its limit on points per run


def run_status(status: str) -> str:
    """MLflow's run status for a trial's (or a study's) status."""
    return RUN_STATUS.get(status, "FINISHED")


def metric_param(tag: str, goal: str) -> str:
    """The METRIC_PARAM value: `val_rmse (minimize)`."""
    return f"{tag} ({goal})"


def best_metric(tag: str) -> str:
    """The study run's metric of the best value so far, a point per finished trial."""
    return f"best_{tag}"


# -- names -------------------------------------------------------------------------------------
def execution_metric(tag: str, execution: int) -> str:
    """The metric key of one execution's curve on its trial's run, `val_rmse/execution-2`:
    the trial's own `val_rmse` is the mean curve, the one its final value, the study's best
    and every reader use. MLflow's chart view groups the keys by the prefix before `/`, so a
    trial's mean and its executions sit side by side in one section of its run."""
    return f"{tag}/execution-{int(execution)}"


def experiment_name(space: str) -> str:
    """One experiment per search space, named after it."""
    return space


def study_run_name(backend: str, study: str) -> str:
    """`<backend>/<study>`; also the prefix of its trial runs' names."""
    return f"{backend}/{study}"


def trial_run_name(prefix: str, number: int) -> str:
    """`<backend>/<study>/trial-N`, or `trial-N` under a study run of the earlier layout
    (prefix '')."""
    return f"{prefix}/trial-{number}" if prefix else f"trial-{number}"


def execution_run_name(prefix: str, execution_id: str) -> str:
    """`<backend>/<study>/baseline-1`, `<backend>/<study>/confirm-03-2`."""
    return f"{prefix}/{execution_id}" if prefix else execution_id


def finalize_run_name(backend: str, study: str) -> str:
    return f"{backend}/{study}/finalize"


def trial_prefix(study_run: Any, backend: str, study: str) -> str:
    """The name prefix of a study run's trial runs: '' where the earlier layout made it."""
    return study_run_name(backend, study) if SPACE in study_run.data.tags else ""


# -- the tags a run gets -----------------------------------------------------------------------
def study_tags(study: str, key: str, backend: str, algorithm: str, space: str) -> dict[str, str]:
    """A new study run's tags (the backend's own attributes are added after them)."""
    return {
        STUDY: study,
        STUDY_KEY: key,
        BACKEND: backend,
        ALGORITHM: algorithm,
        ROLE: ROLE_STUDY,
        SPACE: space,
    }


def detail_tags(details: dict[str, str], omit: tuple[str, ...] = ()) -> dict[str, str]:
    """The backend's own attributes of a study or trial (an event's `details()`: job,
    console_url, workdir, seed, dir, gpu, tuner/..., mapped_into_space...) as tags."""
    return {f"{TAG}{key}": value for key, value in details.items() if key not in omit}


def space_tags(space: str) -> dict[str, str]:
    """The search space experiment's tags."""
    return {SPACE: space}


def study_end_tags(status: str, best_trial_id: str | None, reason: str) -> dict[str, str]:
    tags = {STATUS: status}
    if best_trial_id is not None:
        tags[BEST_TRIAL_ID] = best_trial_id
    if reason:
        tags[REASON] = reason[:REASON_CHARS]
    return tags


def trial_running_tags() -> dict[str, str]:
    return {STATUS: RUNNING.value}


def trial_tags(study_run_id: str, trial_id: str, number: int, study: str, backend: str) -> dict:
    """A new trial run's tags, besides STATUS (the backend's own attributes come after)."""
    return {
        PARENT_RUN: study_run_id,
        TRIAL_ID: trial_id,
        TRIAL_NUMBER: str(number),
        ROLE: ROLE_TRIAL,
        STUDY: study,
        BACKEND: backend,
    }


def trial_end_tags(status: str, final: float | None, reason: str) -> dict[str, str]:
    tags = {STATUS: status}
    if final is not None:
        tags[FINAL_VALUE] = repr(final)
    if reason:
        tags[FAILURE_REASON if status == FAILED else REASON] = reason[:REASON_CHARS]
    return tags


def finalize_tags(
    study: str, backend: str, study_run_id: str, best: Any, process: str
) -> dict[str, str]:
    """The finalize run's tags; `best` is the TrialRow it trains, None for the guess; `process`
    identifies the process running it (FINALIZE_PROCESS)."""
    tags = {
        ROLE: ROLE_FINALIZE,
        STUDY: study,
        BACKEND: backend,
        STUDY_RUN_ID: study_run_id,
        WINNER: best.trial_id if best is not None else WINNER_GUESS,
        FINALIZE_PROCESS: process,
    }
    if best is not None:
        tags.update({BEST_TRIAL_ID: best.trial_id, BEST_TRIAL_RUN_ID: best.run_id})
    return tags


def execution_tags(
    study_run_id: str, execution_id: str, role: str, study: str, backend: str, trial_id: str | None
) -> dict[str, str]:
    """A new baseline or confirmation run's tags, besides STATUS (role: ROLE_BASELINE or
    ROLE_CONFIRMATION; a confirmation names the trial it re-runs)."""
    tags = {
        PARENT_RUN: study_run_id,
        EXECUTION_ID: execution_id,
        ROLE: role,
        STUDY: study,
        BACKEND: backend,
    }
    if trial_id is not None:
        tags[CONFIRMS] = trial_id
    return tags


def verdict_tags(verdict: Any) -> dict[str, str]:
    """The study run's verdict tags from a StudyVerdict event (unknown values left out)."""
    values = {
        WINNER: verdict.winner,
        NOISE: None if verdict.noise is None else repr(verdict.noise),
        IMPROVEMENT: None if verdict.improvement_pct is None else repr(verdict.improvement_pct),
        GUESS_MEAN: None if verdict.guess_mean is None else repr(verdict.guess_mean),
        VERDICT: verdict.words[:REASON_CHARS],
    }
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class StudyTrust:
    """What a study run says of its verdict (None: not recorded, e.g. a study from before)."""

    winner: str | None
    noise: float | None
    improvement_pct: float | None
    guess_mean: float | None
    words: str


def study_trust(study_run: Any) -> StudyTrust:
    tags = study_run.data.tags

    def number(key: str) -> float | None:
        return float(tags[key]) if tags.get(key) else None

    return StudyTrust(
        tags.get(WINNER),
        number(NOISE),
        number(IMPROVEMENT),
        number(GUESS_MEAN),
        tags.get(VERDICT, ""),
    )


def model_version_tags(study: str) -> dict[str, str]:
    return {STUDY: study}


# -- reading a run's tags ----------------------------------------------------------------------
def study_of(run: Any) -> str:
    """The study a run belongs to (a study run of the earlier layout: its run name)."""
    return run.data.tags.get(STUDY, run.info.run_name)


def backend_of(run: Any, default: str = "?") -> str:
    return run.data.tags.get(BACKEND, default)


def algorithm_of(run: Any, default: str = "?") -> str:
    return run.data.tags.get(ALGORITHM, default)


def best_trial_of(run: Any) -> str | None:
    """The trial a finalize run trained (or a study run's best, at its end)."""
    return run.data.tags.get(BEST_TRIAL_ID)


def space_of(run: Any) -> str | None:
    return run.data.tags.get(SPACE)


def metric_of(study_run: Any) -> tuple[str, bool]:
    """(metric tag, minimize) from the study run's METRIC_PARAM, e.g. 'val_rmse (minimize)'."""
    text = study_run.data.params.get(METRIC_PARAM, "val_rmse (minimize)")
    return text.split(" ")[0], not text.endswith("(maximize)")


def is_execution(run: Any) -> bool:
    """A baseline or confirmation run."""
    return EXECUTION_ID in run.data.tags


def is_trial(run: Any) -> bool:
    """A trial run (the earlier layout's trial runs have TRIAL_ID too)."""
    return TRIAL_ID in run.data.tags


@dataclass(frozen=True)
class TrialRow:
    """One trial as MLflow holds it."""

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


def trial_row(run: Any, history: tuple[tuple[int, float], ...]) -> TrialRow:
    tags = run.data.tags
    final = tags.get(FINAL_VALUE)
    return TrialRow(
        trial_id=tags[TRIAL_ID],
        number=int(tags.get(TRIAL_NUMBER, "0")),
        run_id=run.info.run_id,
        status=tags.get(STATUS, run.info.status),
        final=float(final) if final else None,
        epochs=len(history),
        params=dict(run.data.params),
        reason=tags.get(FAILURE_REASON) or tags.get(REASON, ""),
        history=history,
        ended=run.info.end_time,
    )


# -- queries -----------------------------------------------------------------------------------
def quote(text: str) -> str:
    """A value inside a single-quoted MLflow search filter."""
    return text.replace("'", "\\'")


def trials_filter() -> str:
    """The search filter for every trial run (the MLflow UI's comparison view uses it)."""
    return f"tags.`{ROLE}` = '{ROLE_TRIAL}'"


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


def ensure_space_experiment(mlflow_client: Any, space: str, artifact_location: str | None) -> str:
    """The search space's experiment (restored if deleted, created if missing), tagged."""
    name, tags = experiment_name(space), space_tags(space)
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        return mlflow_client.create_experiment(name, artifact_location=artifact_location, tags=tags)
    if found.lifecycle_stage == "deleted":
        mlflow_client.restore_experiment(found.experiment_id)
    for key, value in tags.items():
        if found.tags.get(key) != value:
            mlflow_client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def space_experiment(mlflow_client: Any, space: str) -> Any:
    """The search space's experiment, None when dualtune made none for it."""
    found = mlflow_client.get_experiment_by_name(experiment_name(space))
    return found if found is not None and SPACE in found.tags else None


def space_experiments(mlflow_client: Any) -> list[str]:
    """Ids of the experiments dualtune made for search spaces."""
    found, token = [], None
    while True:
        page = mlflow_client.search_experiments(
            filter_string=f"tags.`{SPACE}` LIKE '%'", max_results=1000, page_token=token
        )
        found += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return found


def _active_named(mlflow_client: Any, names: Iterable[str]) -> list[str]:
    """Ids of the active experiments called `names` (each once)."""
    return [
        found.experiment_id
        for found in map(mlflow_client.get_experiment_by_name, dict.fromkeys(names))
        if found is not None and found.lifecycle_stage == "active"
    ]


def study_experiments(mlflow_client: Any, *names: str) -> list[str]:
    """Where a study's run may live: the space experiments, and the experiments named `names`
    (a study's own experiment, as stores of the earlier layout have)."""
    ids = space_experiments(mlflow_client)
    return ids + [i for i in _active_named(mlflow_client, names) if i not in ids]


def _latest_study_run(mlflow_client: Any, ids: list[str], key: str, value: str) -> Any:
    if not ids:
        return None
    runs = mlflow_client.search_runs(
        ids,
        filter_string=f"tags.`{key}` = '{quote(value)}' AND tags.`{ROLE}` = '{ROLE_STUDY}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def find_study_run_by_key(mlflow_client: Any, key: str, space: str, study: str) -> Any:
    """The latest study run with this STUDY_KEY, in the space's experiment or in the study's
    own (the earlier layout); None when there is none (a new study)."""
    ids = _active_named(mlflow_client, (experiment_name(space), study))
    return _latest_study_run(mlflow_client, ids, STUDY_KEY, key)


def find_study(mlflow_client: Any, study: str, source: str = "--study") -> Any:
    """The study's (latest) study run, in whichever experiment holds it; `source` is what
    named it (a flag or a command), for the error."""
    found = _latest_study_run(mlflow_client, study_experiments(mlflow_client, study), STUDY, study)
    if found is None:
        raise UserError(
            f"{source}: MLflow has no study {study!r}; check the study name and "
            f"--tracking-uri (or MLFLOW_TRACKING_URI)"
        )
    return found


def running_finalize_runs(mlflow_client: Any, study: str, since_ms: int) -> list[Any]:
    """The study's finalize runs still RUNNING that started at or after `since_ms`: a finalize
    whose process died (a killed pipeline) leaves one."""
    ids = study_experiments(mlflow_client, study)
    if not ids:
        return []
    found = all_runs(
        mlflow_client,
        ids,
        f"tags.`{STUDY}` = '{quote(study)}' AND tags.`{ROLE}` = '{ROLE_FINALIZE}' "
        f"AND attributes.status = 'RUNNING'",
    )
    return [run for run in found if run.info.start_time >= since_ms]


def finalize_process(run: Any) -> str | None:
    """FINALIZE_PROCESS of a finalize run (None: recorded before it, or by another writer)."""
    return run.data.tags.get(FINALIZE_PROCESS)


def interrupted_tags(reason: str) -> dict[str, str]:
    """The tags of a finalize run whose process died before it ended."""
    return {REASON: reason[:REASON_CHARS]}


def study_parents(mlflow_client: Any, experiment_id: str) -> list[Any]:
    """Every study's run in an experiment (the latest per study name), oldest first."""
    runs = all_runs(
        mlflow_client,
        [experiment_id],
        f"tags.`{ROLE}` = '{ROLE_STUDY}'",
        order_by=["attributes.start_time DESC"],
    )
    latest: dict[str, Any] = {}
    for run in runs:
        latest.setdefault(study_of(run), run)
    return sorted(latest.values(), key=lambda r: r.info.start_time or 0)


def latest_study(mlflow_client: Any, experiment_id: str) -> Any:
    """The most recently started study run of an experiment (a space), None when none."""
    parents = study_parents(mlflow_client, experiment_id)
    return parents[-1] if parents else None


def trial_runs(mlflow_client: Any, study_run: Any) -> list[Any]:
    """The study run's trial runs (child runs with a TRIAL_ID), in search order."""
    children = all_runs(
        mlflow_client,
        [study_run.info.experiment_id],
        f"tags.{PARENT_RUN} = '{study_run.info.run_id}'",
    )
    return [run for run in children if is_trial(run)]


@dataclass(frozen=True)
class ExecutionRow:
    """A baseline or confirmation run as MLflow holds it."""

    execution_id: str
    role: str
    run_id: str
    status: str
    final: float | None
    trial_id: str | None  # a confirmation: the trial it re-runs
    history: tuple[tuple[int, float], ...] = ()


def executions(mlflow_client: Any, study_run: Any, metric: str | None = None) -> list[ExecutionRow]:
    """The study's baseline and confirmation runs, each with its history of `metric`."""
    children = all_runs(
        mlflow_client,
        [study_run.info.experiment_id],
        f"tags.{PARENT_RUN} = '{study_run.info.run_id}'",
    )
    runs = [run for run in children if is_execution(run)]
    metric = metric or metric_of(study_run)[0]
    histories = metric_histories(mlflow_client, [r.info.run_id for r in runs], metric)
    rows = []
    for run in runs:
        tags = run.data.tags
        final = tags.get(FINAL_VALUE)
        rows.append(
            ExecutionRow(
                tags[EXECUTION_ID],
                tags.get(ROLE, ""),
                run.info.run_id,
                tags.get(STATUS, run.info.status),
                float(final) if final else None,
                tags.get(CONFIRMS),
                histories.get(run.info.run_id, ()),
            )
        )
    return sorted(rows, key=lambda r: r.execution_id)


def trials(mlflow_client: Any, study_run: Any, metric: str | None = None) -> list[TrialRow]:
    """The study's trials, each with its history of `metric` (default: the study's, from its
    METRIC_PARAM) read in bulk, in search order."""
    runs = trial_runs(mlflow_client, study_run)
    metric = metric or metric_of(study_run)[0]
    histories = metric_histories(mlflow_client, [r.info.run_id for r in runs], metric)
    return [trial_row(run, histories.get(run.info.run_id, ())) for run in runs]


def metric_histories(
    mlflow_client: Any, run_ids: list[str], key: str
) -> dict[str, tuple[tuple[int, float], ...]]:
    """Every run's (step, value) points of one metric, read in bulk: a few queries for a
    thousand runs instead of one round trip per run. The latest value wins on a repeated step."""
    points: dict[str, dict[int, tuple[int, float]]] = {run_id: {} for run_id in run_ids}
    for metric_run, metric in _bulk(mlflow_client, run_ids, key):
        seen = points.setdefault(metric_run, {})
        if metric.step not in seen or seen[metric.step][0] <= metric.timestamp:
            seen[metric.step] = (metric.timestamp, metric.value)
    return {
        run_id: tuple((step, value) for step, (_, value) in sorted(by_step.items()))
        for run_id, by_step in points.items()
    }


# -- MLflow's private API, fenced here ---------------------------------------------------------
def _store(mlflow_client: Any) -> Any:
    """The client's store: MLflow's public client has no bulk metric read, its stores do."""
    return mlflow_client._tracking_client.store


def _bulk(mlflow_client: Any, run_ids: list[str], key: str) -> Iterable[tuple]:
    store = _store(mlflow_client)
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
    """The MLflow UI's own ajax endpoint for many runs' histories (not in the public API)."""
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


def vertex_model_of(run: Any) -> str | None:
    """`model@version` of the Vertex Model Registry version a finalize run uploaded, if any."""
    tags = run.data.tags
    if not tags.get(VERTEX_MODEL):
        return None
    return f"{tags[VERTEX_MODEL]}@{tags.get(VERTEX_MODEL_VERSION, 'default')}"
