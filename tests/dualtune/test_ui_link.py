"""The comparison link `dualtune ui` prints: the saved view it writes on the space's experiment
(a real SQLite store) and the URL that opens it."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest
from mlflow.tracking import MlflowClient

from dualtune.cli import main
from dualtune.ui import (
    VIEW_KEY,
    VIEW_NAME,
    VIEW_TAG,
    comparison_link,
    comparison_view,
    select_link,
    ui_base,
    view_link,
)
from tests.conftest import FIXTURES
from tests.dualtune.mlflow_layouts import record_study
from trialkit.errors import UserError

BASE = "http://127.0.0.1:5000"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two studies of the toy space through the real recorder: one experiment holds both."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    record_study(uri, "s1", "local", {"0": ("COMPLETED", [3.0, 2.0])})
    record_study(uri, "s2", "vertex", {"1": ("COMPLETED", [2.5, 1.5])})
    client = MlflowClient(uri)
    return uri, client, client.get_experiment_by_name("toy").experiment_id


def saved_state(client: MlflowClient, experiment_id: str) -> dict:
    envelope = json.loads(client.get_experiment(experiment_id).tags[VIEW_TAG])
    assert envelope["name"] == VIEW_NAME
    return json.loads(envelope["state"])


def test_the_link_opens_the_runs_page_in_chart_mode_on_the_saved_view():
    link = view_link(BASE + "/", "7")
    page, query = link.split("#", 1)[1].split("?", 1)
    assert link.startswith(f"{BASE}/#/experiments/7/runs?")
    assert page == "/experiments/7/runs"
    assert parse_qs(query) == {
        "workflowType": ["machine_learning"],
        "compareRunsMode": ["CHART"],
        "viewStateShareKey": [VIEW_KEY],
    }  # no search parameter: any of them makes MLflow ignore the saved view


def test_the_view_lists_trials_flat_by_backend_all_shown_one_line_chart_of_the_metric():
    state = comparison_view("val_rmse", minimize=True)
    assert state["searchFilter"] == "tags.`dualtune.role` = 'trial'"
    assert state["runsHiddenMode"] == "SHOW_ALL"
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "dualtune.backend"}]
    assert state["useGroupedValuesInCharts"] is False
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`val_rmse`", True)
    [chart] = state["compareRunCharts"]
    assert (chart["type"], chart["metricKey"], chart["selectedMetricKeys"]) == (
        "LINE",
        "val_rmse",
        ["val_rmse"],
    )
    assert chart["metricSectionId"] == state["compareRunSections"][0]["uuid"]
    maximize = comparison_view("accuracy", minimize=False)
    assert (maximize["orderByKey"], maximize["orderByAsc"]) == ("metrics.`accuracy`", False)


def test_a_study_links_to_its_space_experiment_and_writes_the_view_there(store, tmp_path):
    uri, client, experiment_id = store
    link = select_link(uri, BASE, tmp_path / "studies", "s1", None)
    assert urlparse(link).fragment.startswith(f"/experiments/{experiment_id}/runs?")
    assert select_link(uri, BASE, tmp_path / "studies", "s2", None) == link  # the same space
    state = saved_state(client, experiment_id)
    assert state == comparison_view("val_rmse", True)


def test_a_space_is_found_by_its_yaml_file_or_its_name(store, tmp_path):
    uri, _, experiment_id = store
    by_file = select_link(uri, BASE, tmp_path, None, str(FIXTURES / "toy.yaml"))
    assert by_file == view_link(BASE, experiment_id)
    assert select_link(uri, BASE, tmp_path, None, "toy") == by_file
    with pytest.raises(UserError, match=r"--space: MLflow has no experiment for .*'nope'"):
        select_link(uri, BASE, tmp_path, None, "nope")


def test_the_latest_study_on_disk_is_the_default_none_yet_means_no_link(store, tmp_path):
    uri, _, experiment_id = store
    assert select_link(uri, BASE, tmp_path / "studies", None, None) is None
    (tmp_path / "studies" / "s2").mkdir(parents=True)
    (tmp_path / "studies" / "s2" / "study.json").write_text('{"study": "s2"}')
    link = select_link(uri, BASE, tmp_path / "studies", None, None)
    assert link == view_link(BASE, experiment_id)


def test_an_unknown_study_is_an_error_before_any_server_starts(store, capsys):
    uri, _, _ = store
    code = main(["ui", "--study", "nope", "--tracking-uri", uri, "--port", "1"])
    assert code == 2
    assert "--study: MLflow has no study 'nope'" in capsys.readouterr().err


def test_tune_can_end_with_the_link_where_dualtune_ui_or_the_tracking_server_serves(store):
    uri, _, experiment_id = store
    assert comparison_link(uri, "s2") == view_link("http://127.0.0.1:5000", experiment_id)
    assert comparison_link(uri, "s2", port=5001).startswith("http://127.0.0.1:5001/#/")
    assert ui_base("http://mlflow.example:8080/") == "http://mlflow.example:8080"
    assert ui_base(uri, "0.0.0.0", 80) == "http://0.0.0.0:80"
