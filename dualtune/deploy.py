"""`dualtune deploy --backend local`: serve a finalized model with MLflow's own scoring server.

The server is `mlflow models serve` on the registered version (models:/<study>/<version>), in
this environment (--env-manager local), started as an argv subprocess in its own process group
so that stopping it stops its workers too. deploy waits (bounded) until /ping answers, prints a
ready-to-run request, and runs until Ctrl-C, SIGTERM or SIGHUP; whichever comes, the server's
whole group is stopped before deploy returns, so no process and no bound port outlive it.
While it runs, deployment.json in the study's folder says where it listens (`dualtune predict`
reads it).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from dualtune.served_model import ServedModel
from dualtune.servers import Stopped, stop_group, stop_signals, wait_exit
from dualtune.study_record import write_json_atomic
from trialkit.errors import DualtuneError, UserError

READY_TIMEOUT_S = 180.0  # loading TensorFlow and the model takes tens of seconds on a busy host
DEPLOYMENT_FILE = "deployment.json"


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something listens on, before anything starts (bound as uvicorn binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"--port {port}: {host}:{port} is in use ({exc.strerror}); pick a free one "
                f"with --port N or stop what listens there"
            ) from None


def serve_local(
    model: ServedModel,
    tracking_uri: str,
    host: str,
    port: int,
    study_dir: Path,
    say: Callable[[str], None],
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> int:
    """Serve `model` on host:port until a stop signal; returns the exit status (0)."""
    check_port_free(host, port)
    url = f"http://{host}:{port}"
    log_file = study_dir / "serve.log"
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model.uri]
    argv += ["--env-manager", "local", "-h", host, "-p", str(port)]
    # MLflow starts uvicorn by name: this interpreter's scripts first on PATH, so it is ours.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    say(f"serving model {model.name} version {model.version} at {url} (log: {log_file})")
    with open(log_file, "ab") as output, stop_signals():
        server = subprocess.Popen(
            argv, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_ready(server, url, ready_timeout_s, log_file)
            write_json_atomic(study_dir / DEPLOYMENT_FILE, _deployment(model, url, server.pid))
            say(f"ready. Try it:\n  {curl_example(url, model)}")
            say(f"or: dualtune predict --study {model.name} --instances FILE.csv")
            say("Ctrl-C stops the server")
            wait_exit(server)
            raise DualtuneError(f"the model server stopped by itself; see {log_file}")
        except Stopped:
            say("stopping the model server")
            return 0
        finally:
            stop_group(server)
            (study_dir / DEPLOYMENT_FILE).unlink(missing_ok=True)


def _deployment(model: ServedModel, url: str, pid: int) -> dict:
    return {
        "backend": "local",
        "url": url,
        "model": model.name,
        "version": model.version,
        "pid": pid,
    }


def _wait_ready(server: subprocess.Popen, url: str, timeout_s: float, log_file: Path) -> None:
    """Until /ping answers 200; the server's own last line if it dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise DualtuneError(f"the model server exited ({_last_line(log_file)}); see {log_file}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise DualtuneError(f"the model server did not answer {url}/ping in {timeout_s:g} s")


def _last_line(path: Path) -> str:
    lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1].strip() if lines else "no output"


def request_body(model: ServedModel) -> dict:
    """The scoring server's request for the model's example row."""
    return {"dataframe_records": [model.example]}


def curl_example(url: str, model: ServedModel) -> str:
    """A ready-to-run curl line for one real row."""
    body = json.dumps(request_body(model))
    return f"curl -s {url}/invocations -H 'Content-Type: application/json' -d {shlex.quote(body)}"


def running_deployment(study_dir: Path) -> dict | None:
    """What deploy wrote while it serves this study (url, model, version), if it does."""
    path = study_dir / DEPLOYMENT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
