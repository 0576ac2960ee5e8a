"""`dualtune ui` as a person sees it: a local and a vertex study (emulator) of flights.yaml,
the real MLflow UI, headless Chromium opened at the link `dualtune ui` prints, and no click."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from tests.backends import test_vertex
from tests.conftest import REPO, dualtune_argv, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.filterwarnings(r"ignore:(currentThread|getName)\(\) is deprecated"),
]

# The vertex tests' session emulator, shared.
emulator, vertex_env = test_vertex.emulator, test_vertex.vertex_env

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
CARD = '[data-testid="experiment-view-compare-runs-card"]'
LINK = re.compile(r"compare the trials: (http://\S+)")


def tune(*args: str) -> None:
    done = subprocess.run(dualtune_argv("tune", *args), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def start_ui(port: int) -> tuple[subprocess.Popen, str]:
    """`dualtune ui` in a subprocess, and the comparison link it prints (bounded wait)."""
    ui = subprocess.Popen(
        dualtune_argv("ui", "--port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = ui.stdout.readline()  # the link line follows the server's first /health answer
        if not line:
            break
        lines.append(line)
        found = LINK.search(line)
        if found:
            return ui, found.group(1)
    ui.kill()
    raise AssertionError(f"dualtune ui printed no link: {''.join(lines)}")


def test_the_link_shows_every_trial_of_both_backends_in_one_val_rmse_chart(
    vertex_env, isolated, flights_data
):
    # The flights study itself, 3 trials on each backend, tiny trials (2 epochs, 1,500 rows).
    (isolated / "trainer").symlink_to(REPO / "trainer")  # what Vertex packages, from the cwd
    space = str(REPO / "search_spaces" / "flights.yaml")
    # The chart of trials is the point here, not the verdict: no baseline or confirmation runs.
    budget = ("--max-trials", "3", "--algorithm", "random", "--space", space, "--no-baseline")
    budget = (*budget, "--no-confirm")
    tiny = ("--", "--num_examples=1500", "--num_eval_examples=500", "--num_epochs=2")
    tune(*budget, "--study", "here", *tiny)
    tune("--backend", "vertex", "--emulator", vertex_env.url, *budget, "--study=there", *tiny)
    port = free_port()
    ui, link = start_ui(port)
    try:
        assert link.startswith(f"http://127.0.0.1:{port}/#/experiments/")
        legend, traces = open_link(link, isolated / "compare.png")
    finally:
        ui.send_signal(signal.SIGTERM)
        try:
            ui.wait(60)
        except subprocess.TimeoutExpired:
            ui.kill()
    expected = {f"{b}/{s}/trial-{n}" for b, s in (("local", "here"), ("vertex", "there"))
                for n in (1, 2, 3)}  # fmt: skip
    shown = set(re.findall(r"((?:local|vertex)/\w+/trial-\d+) \(val_rmse\)", legend))
    assert shown == expected  # every trial of both backends, nothing else (no study run)
    assert traces >= len(expected)  # a drawn curve per trial
    with socket.socket() as s:  # the UI stopped with the command, nothing left on the port
        assert s.connect_ex(("127.0.0.1", port)) != 0


def open_link(link: str, screenshot, curves: int = 6) -> tuple[str, int]:
    """Open the link as a person would, without a click: the val_rmse chart's legend text and
    the number of curves Plotly drew in it. The page is saved to `screenshot`."""
    from playwright.sync_api import sync_playwright

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
            page.goto(link)
            card = page.locator(
                CARD,
                has=page.locator('h4[title="val_rmse"]'),
            )
            try:
                card.first.locator(".js-plotly-plot").first.wait_for(timeout=90_000)
                for backend in ("local", "vertex"):  # curves load after the chart frame
                    card.first.get_by_text(f"{backend}/").first.wait_for(timeout=60_000)
                page.wait_for_function(  # bounded: fails the test when fewer are ever drawn
                    f"n => document.querySelectorAll('{CARD} .js-plotly-plot .scatterlayer "
                    f".trace').length >= n",
                    arg=curves,
                    timeout=60_000,
                )
            finally:
                page.screenshot(path=str(screenshot))
            assert card.count() == 1  # one chart of val_rmse
            traces = card.first.locator(".js-plotly-plot .scatterlayer .trace").count()
            return card.first.inner_text(), traces
        finally:
            context.close()
