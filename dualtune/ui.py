"""`dualtune ui`: the MLflow UI over the same store, on 127.0.0.1 unless asked otherwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dualtune.tracking import resolve_tracking_uri
from search_spaces.errors import BackendError


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
    """Start `mlflow ui` and return once it answers /health (bounded wait)."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        ui_command(uri, artifacts, host, port),
        env=env,
        stdout=out,  # noqa: S603
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BackendError(
                f"mlflow ui exited with status {proc.returncode}; is port {port} free? try --port"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop_ui(proc)
    raise BackendError(f"mlflow ui did not answer {url}/health within {timeout_s:.0f} s")


def stop_ui(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_ui(tracking_uri: str | None, host: str, port: int) -> int:
    uri, artifacts = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        print(f"the study's MLflow server is already a UI: open {uri}")
        return 0
    proc = start_ui(uri, artifacts, host, port)
    print(f"MLflow UI: http://{host}:{port}  (store: {uri}); Ctrl-C to stop", flush=True)
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_ui(proc)
    return 0
