"""`dualtune ui` stopped by SIGTERM or SIGHUP (a `kill`, a closed terminal) stops the MLflow
server it started: no process of its tree is left and the port is free again. Over a remote
tracking server, `dualtune ui` starts nothing and prints the link on that server."""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from dualtune.cli import main
from dualtune.ui import VIEW_TAG, start_ui, stop_ui, view_link
from tests.conftest import dualtune_argv, free_port, signal_another_thread
from tests.dualtune.mlflow_layouts import record_study

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def children(pid: int) -> set[int]:
    """Every live (non-zombie) descendant of pid, read from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_started(proc: subprocess.Popen, port: int) -> str:
    """The line `dualtune ui` prints once its server answers (pytest's timeout bounds the read),
    checked against the server's /health."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("MLflow UI: "):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
                assert answer.status == 200
            return line
    raise AssertionError(f"dualtune ui exited early: {''.join(lines)}")


@pytest.mark.parametrize(
    ("sig", "to_thread"),
    [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGTERM, True)],
    ids=["SIGTERM", "SIGHUP", "SIGTERM-to-a-worker-thread"],
)
def test_a_signal_to_dualtune_ui_stops_the_mlflow_server_it_started(isolated, sig, to_thread):
    port = free_port()
    store = f"sqlite:///{isolated / 'mlflow.db'}"
    ui = subprocess.Popen(
        dualtune_argv("ui", "--port", str(port), "--tracking-uri", store),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tree: set[int] = set()
    try:
        started = wait_started(ui, port)
        tree = children(ui.pid)
        assert len(tree) >= 2, "expected mlflow ui and its uvicorn worker"  # what we check
        if to_thread:  # the kernel's choice on a busy machine: the main thread is not woken
            signal_another_thread(ui.pid, sig)
        else:
            ui.send_signal(sig)
        out, _ = ui.communicate(timeout=60)
    finally:
        if ui.poll() is None:
            ui.kill()
        for pid in tree:  # leave nothing behind, whatever the outcome
            if alive(pid):
                subprocess.run(["kill", "-9", str(pid)], check=False)
    assert ui.returncode == 0, out
    assert started.startswith(f"MLflow UI: http://127.0.0.1:{port}")
    assert [pid for pid in tree if alive(pid)] == []
    with socket.socket() as s:  # nothing listens on the port any more
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_over_a_tracking_server_the_link_is_on_that_server(isolated, capsys):
    store = f"sqlite:///{isolated / 'mlflow.db'}"
    record_study(store, "far", "vertex", {"1": ("COMPLETED", [2.0, 1.0])})
    port = free_port()
    server = start_ui(store, None, "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"
    try:
        code = main(["ui", "--tracking-uri", url, "--study", "far"])
        experiment = MlflowClient(url).get_experiment_by_name("toy")
    finally:
        stop_ui(server)
    assert code == 0
    link = view_link(url, experiment.experiment_id)
    assert f"already a UI: open {link}" in capsys.readouterr().out
    assert VIEW_TAG in experiment.tags  # the view the link opens, written through the server
