"""`dualtune ui`: the MLflow UI over the same store, on 127.0.0.1 unless asked otherwise, and a
link that opens it on the comparison of a search space's trials.

The link is `#/experiments/<id>/runs?workflowType=machine_learning&compareRunsMode=CHART&
viewStateShareKey=dualtune-trials`. MLflow's URL alone cannot show every trial's curve: its
runs page nests trial runs under their (collapsed) study run and charts the first 10 runs only,
and neither grouping nor "show all runs" is a URL parameter. Both are part of a saved view,
which MLflow keeps as the experiment tag `mlflow.sharedViewState.<key>` and opens from the
`viewStateShareKey` parameter; dualtune writes that view (named "dualtune: every trial by
backend") before printing the link. The view filters on the trial tag, groups by backend (which
lists the trials flat, out of their study runs), shows all runs, orders them best first, and
puts one full-width line chart of the metric, a curve per trial, at the top. Any search
parameter added to the URL (searchFilter, orderByKey...) makes MLflow ignore the view.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from dualtune import mlflow_layout as layout
from dualtune.servers import Stopped, stop_group, stop_signals, wait_exit
from dualtune.tracking import resolve_tracking_uri, store_client
from trialkit.errors import BackendError, UserError

log = logging.getLogger(__name__)

VIEW_KEY = "dualtune-trials"  # the saved view's id: experiment tag mlflow.sharedViewState.<id>
VIEW_NAME = "dualtune: every trial by backend"  # as the runs page's "Views" menu shows it
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
DEFAULT_UI = "http://127.0.0.1:5000"  # where `dualtune ui` serves with its defaults


def comparison_view(metric: str = "val_rmse", minimize: bool = True) -> dict[str, Any]:
    """The runs page's state for the comparison: MLflow's own keys (search facets and UI state)."""
    section = "dualtune-trials"
    return {
        "searchFilter": layout.trials_filter(),
        "orderByKey": f"metrics.`{metric}`",  # best first; sorting by a metric also keeps
        "orderByAsc": minimize,  # MLflow from adding the (filtered-out) study runs back
        "runsHiddenMode": "SHOW_ALL",  # not the default first 10
        "groupBy": {
            "aggregateFunction": "min" if minimize else "max",
            "groupByKeys": [{"mode": "tag", "groupByData": layout.BACKEND}],
        },
        "useGroupedValuesInCharts": False,  # a curve per trial, not one per group
        "compareRunSections": [
            {
                "uuid": section,
                "name": f"{metric} of every trial",
                "display": True,
                "isReordered": False,
                "deleted": False,
                "isGenerated": False,
                "columns": 1,
                "cardHeight": 520,
            }
        ],
        "compareRunCharts": [_line_chart(metric, section)],
    }


def _line_chart(metric: str, section: str) -> dict[str, Any]:
    """A line chart card as MLflow 3's runs page stores it (its RunsChartsLineCardConfig)."""
    return {
        "uuid": f"dualtune-{metric}",
        "type": "LINE",
        "metricSectionId": section,
        "isGenerated": False,
        "deleted": False,
        "runsCountToCompare": 1000,
        "metricKey": metric,
        "selectedMetricKeys": [metric],
        "displayName": metric,
        "lineSmoothness": 0,
        "xAxisKey": "step",
        "xAxisScaleType": "linear",
        "scaleType": "linear",
        "selectedXAxisMetricKey": "",
        "range": {},
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "useGlobalXaxisKey": True,
        "useGlobalLineSmoothing": True,
    }


def save_view(mlflow_client: Any, experiment_id: str, metric: str, minimize: bool) -> str:
    """Write (or refresh) the comparison view on the experiment; returns its key."""
    now = int(time.time() * 1000)
    envelope = {
        "name": VIEW_NAME,
        "createdAt": now,
        "updatedAt": now,
        "state": json.dumps(comparison_view(metric, minimize)),
    }
    mlflow_client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(envelope))
    return VIEW_KEY


def view_link(base_url: str, experiment_id: str, key: str = VIEW_KEY) -> str:
    """The runs page of the experiment, in chart mode, opened on the saved view `key`."""
    query = urlencode(
        {"workflowType": "machine_learning", "compareRunsMode": "CHART", "viewStateShareKey": key}
    )
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def ui_base(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000) -> str:
    """Where the UI for this store is: the tracking server itself, or `dualtune ui`'s address."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return f"http://{host}:{port}"


def comparison_link(
    tracking_uri: str, study: str, host: str = "127.0.0.1", port: int = 5000
) -> str:
    """The link to a study's space compared in the MLflow UI (for tune's closing lines):
    writes the view on the experiment holding the study, then returns the link."""
    from dualtune.tracking import client

    mlflow_client = client(tracking_uri)
    parent = layout.find_study(mlflow_client, study)
    return link_for(mlflow_client, parent, ui_base(tracking_uri, host, port))


def link_for(mlflow_client: Any, parent: Any, base: str) -> str:
    """The comparison link for the experiment holding `parent` (a study's run), its view
    saved on the experiment."""
    metric, minimize = layout.metric_of(parent)
    experiment_id = parent.info.experiment_id
    return view_link(base, experiment_id, save_view(mlflow_client, experiment_id, metric, minimize))


def select_link(
    tracking_uri: str, base: str, workdir: Path, study: str | None, space: str | None
) -> str | None:
    """The comparison link for `--space` (a YAML file or a space name), else `--study`, else the
    most recent study in `workdir`; None when there is no study yet (and none was asked for)."""
    from dualtune import study_record

    if space is not None:
        return _space_link(tracking_uri, base, space)
    if study is None:
        try:
            study = study_record.find(workdir, None).name
        except UserError:
            return None
        try:
            _, mlflow_client = store_client(tracking_uri, "--study", study)
            return link_for(mlflow_client, layout.find_study(mlflow_client, study), base)
        except UserError as exc:
            log.warning("no comparison link for the latest study %s: %s", study, exc)
            return None
    _, mlflow_client = store_client(tracking_uri, "--study", study)
    return link_for(mlflow_client, layout.find_study(mlflow_client, study), base)


def _space_link(tracking_uri: str, base: str, space: str) -> str:
    name, metric = space, None
    if space.endswith((".yaml", ".yml")) or Path(space).is_file():
        from search_spaces.loader import load_space

        loaded = load_space(Path(space))
        name, metric = loaded.name, (loaded.metric.tag, loaded.metric.minimize)
    _, mlflow_client = store_client(tracking_uri, "--space", name)
    experiment = layout.space_experiment(mlflow_client, name)
    if experiment is None:
        raise UserError(
            f"--space: MLflow has no experiment for the search space {name!r}; run "
            f"`dualtune tune --space FILE` first, or check --space and --tracking-uri"
        )
    if metric is None:
        latest = layout.latest_study(mlflow_client, experiment.experiment_id)
        metric = layout.metric_of(latest) if latest else ("val_rmse", True)
    key = save_view(mlflow_client, experiment.experiment_id, *metric)
    return view_link(base, experiment.experiment_id, key)


def ui_command(uri: str, artifacts: str | None, host: str, port: int) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if artifacts:
        argv += ["--default-artifact-root", artifacts]
    return argv


def start_ui(
    uri: str,
    artifacts: str | None,
    host: str,
    port: int,
    log_file: Path | None = None,
    timeout_s: float = 120,
) -> subprocess.Popen:
    """Start `mlflow ui` in its own process group and return once it answers /health (bounded
    wait); whatever interrupts the wait stops the server again."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        ui_command(uri, artifacts, host, port),
        env=env,
        stdout=out,  # noqa: S603
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_health(proc, f"http://{host}:{port}", port, timeout_s)
    except BaseException:
        stop_ui(proc)
        raise
    return proc


def _wait_health(proc: subprocess.Popen, url: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BackendError(
                f"mlflow ui exited with status {proc.returncode}; is port {port} free? try --port"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise BackendError(f"mlflow ui did not answer {url}/health within {timeout_s:.0f} s")


def stop_ui(proc: subprocess.Popen, grace_s: float = 15) -> None:
    """Stop the server's whole process group (mlflow ui and its uvicorn worker)."""
    stop_group(proc, grace_s)


def run_ui(
    tracking_uri: str | None,
    workdir: Path,
    host: str = "127.0.0.1",
    port: int = 5000,
    study: str | None = None,
    space: str | None = None,
) -> int:
    """Serve the MLflow UI over the store until Ctrl-C, SIGTERM or SIGHUP, and print the link
    to the comparison of the selected (or latest) study's search space."""
    uri, artifacts = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        link = select_link(uri, ui_base(uri), workdir, study, space)
        print(f"the study's MLflow server is already a UI: open {link or uri}")
        return 0
    link = select_link(uri, ui_base(uri, host, port), workdir, study, space)
    proc, status = None, 0
    with stop_signals():
        try:
            proc = start_ui(uri, artifacts, host, port)
            print(f"MLflow UI: http://{host}:{port}  (store: {uri}); Ctrl-C to stop", flush=True)
            print(f"compare the trials: {link}" if link else "no study yet", flush=True)
            status = wait_exit(proc)
            print(f"dualtune: mlflow ui exited by itself (status {status})", file=sys.stderr)
            status = status or 1
        except Stopped:
            pass
        finally:
            if proc is not None:
                stop_ui(proc)
    return status
