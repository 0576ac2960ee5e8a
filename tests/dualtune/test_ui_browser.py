"""`dualtune ui` as a person sees it: a real study, the real MLflow UI, headless Chromium."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FIXTURES, dualtune_argv, free_port, mlflow_study_runs

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def wait_health(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "dualtune ui exited early"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("MLflow UI never answered /health")


def test_ui_shows_trial_runs_and_their_val_rmse_curves(isolated):
    done = subprocess.run(
        dualtune_argv("tune", "--space", str(FIXTURES / "toy.yaml"), "--study", "ui"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    client = MlflowClient(f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}")
    trials = [
        r for r in mlflow_study_runs(client, "ui") if r.data.tags.get("dualtune.role") == "trial"
    ]
    assert len(trials) == 3
    parent_id = trials[0].data.tags["mlflow.parentRunId"]

    port = free_port()
    ui = subprocess.Popen(
        dualtune_argv("ui", "--port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_health(url, ui)
        legend = open_chart(
            url, trials[0].info.experiment_id, parent_id, "local/ui/trial-1", isolated / "ui.png"
        )
    finally:
        ui.send_signal(signal.SIGINT)
        try:
            ui.wait(30)
        except subprocess.TimeoutExpired:
            ui.kill()
    for run in trials:
        assert f"{run.info.run_name} (val_rmse)" in legend
    with socket.socket() as s:  # the UI stopped with the command, nothing left on the port
        assert s.connect_ex(("127.0.0.1", port)) != 0


def open_chart(url: str, experiment_id: str, parent_id: str, first_trial: str, screenshot) -> str:
    from playwright.sync_api import sync_playwright

    page_url = (
        f"{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        f"&compareRunsMode=CHART"
    )
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(screenshot.parent / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            page = context.new_page()
            page.goto(page_url)
            close = page.locator('button[data-component-id="mlflow.assistant.chat_panel.close"]')
            parent_row = page.locator(f'.ag-pinned-left-cols-container [row-id="{parent_id}"]')
            parent_row.wait_for(timeout=90_000)
            if close.count():
                close.first.click()
            # Trial runs are nested under the study run: expand it, as a person would.
            with page.expect_response(
                lambda r: "get-history-bulk-interval" in r.url and "metric_key=val_rmse" in r.url,
                timeout=90_000,
            ):
                parent_row.locator('button[data-component-id*="runnamecellrenderer"]').click()
            card = page.locator(
                '[data-testid="experiment-view-compare-runs-card"]',
                has=page.locator('h4[title="val_rmse"]'),
            )
            try:
                card.first.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
                # The legend lists each curve as "<run name> (val_rmse)".
                card.first.get_by_text(f"{first_trial} (val_rmse)").first.wait_for(timeout=60_000)
            finally:
                page.screenshot(path=str(screenshot))
            return card.first.inner_text()
        finally:
            context.close()
