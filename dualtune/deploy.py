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
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dualtune.served_model import ServedModel
from dualtune.study_record import write_json_atomic
from trialkit.errors import DualtuneError, UserError

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 180.0  # loading TensorFlow and the model takes tens of seconds on a busy host
STOP_TIMEOUT_S = 15.0  # after SIGTERM, before SIGKILL
DEPLOYMENT_FILE = "deployment.json"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop(Exception):
    """Ctrl-C, SIGTERM or SIGHUP arrived: stop serving."""


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
    with open(log_file, "ab") as output, _stop_signals():
        server = subprocess.Popen(
            argv, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_ready(server, url, ready_timeout_s, log_file)
            write_json_atomic(study_dir / DEPLOYMENT_FILE, _deployment(model, url, server.pid))
            say(f"ready. Try it:\n  {curl_example(url, model)}")
            say(f"or: dualtune predict --study {model.name} --instances FILE.csv")
            say("Ctrl-C stops the server")
            server.wait()
            raise DualtuneError(f"the model server stopped by itself; see {log_file}")
        except _Stop:
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


@contextmanager
def _stop_signals() -> Iterator[None]:
    """The first Ctrl-C, SIGTERM or SIGHUP raises _Stop; later ones are ignored, so that a
    second signal cannot cut the server's cleanup short. The handlers are restored after."""
    raised: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if not raised:
            raised.append(signum)
            raise _Stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


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


def stop_group(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after STOP_TIMEOUT_S."""
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        if _gone(server, wait_s):
            break


def _gone(server: subprocess.Popen, timeout_s: float) -> bool:
    """Whether the whole group exits within timeout_s (the leader reaped on the way)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        server.poll()
        if not _group_alive(server.pid):
            return True
        time.sleep(0.1)
    return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


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
