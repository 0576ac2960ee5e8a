"""From a finalized model to predictions: the MLflow pyfunc on raw rows, `dualtune deploy` with
MLflow's real scoring server on a loopback port, `dualtune predict` and a raw HTTP request
(what the printed curl sends), and a SIGTERM that leaves no server or port behind.

One tiny study is tuned and finalized once for the module (the real trainer, a real MLflow
store); every test reads it and none changes it.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FIXTURES, REPO, dualtune_argv, free_port, signal_another_thread

pytestmark = pytest.mark.slow

TINY = ["--num_examples=2000", "--num_epochs=1"]
STUDY = "served"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _cli(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        dualtune_argv(*args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def finalized(tmp_path_factory, flights_data) -> Path:
    """A folder holding studies/ and mlruns/ with study STUDY tuned (1 trial) and finalized."""
    root = tmp_path_factory.mktemp("served")
    tune = _cli(root, "tune", "--study", STUDY, "--max-trials", "1", "--", *TINY)
    assert tune.returncode == 0, tune.stderr[-3000:]
    final = _cli(root, "finalize", "--study", STUDY, "--", *TINY)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "signature" not in final.stderr.lower(), final.stderr[-3000:]
    return root


@pytest.fixture
def test_rows(flights_data) -> pd.DataFrame:
    """Three raw rows of test.csv's feature columns, as pandas reads them (strings included)."""
    from trainer.data import FEATURES

    return pd.read_csv(flights_data["test"]).sample(3, random_state=7)[list(FEATURES)]


def _uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def _keras_predictions(root: Path, rows: pd.DataFrame, tmp_path: Path):
    """The finalized Keras model's own predictions, through the trainer's own input tensors."""
    import keras
    from mlflow.tracking import MlflowClient

    from trainer.data import to_tensors

    client = MlflowClient(_uri(root))
    (version,) = client.search_model_versions(f"name = '{STUDY}'")
    path = client.download_artifacts(version.run_id, "model/artifacts/model.keras", tmp_path)
    features, _ = to_tensors(rows.assign(ontime=0.0))
    return keras.saving.load_model(path).predict(features, verbose=0)[:, 0]


def test_pyfunc_predicts_raw_rows_as_keras_does(finalized, test_rows, tmp_path, monkeypatch):
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from trainer.data import FEATURES, STRING_FEATURES

    monkeypatch.setenv("MLFLOW_TRACKING_URI", _uri(finalized))
    model = mlflow.pyfunc.load_model(f"models:/{STUDY}/1")
    inputs = model.metadata.signature.inputs
    assert inputs.input_names() == list(FEATURES)
    assert {c.name for c in inputs.inputs if c.type.name == "string"} == set(STRING_FEATURES)
    predicted = model.predict(test_rows)["pred"].to_numpy()
    expected = _keras_predictions(finalized, test_rows, tmp_path)
    assert predicted == pytest.approx(expected, abs=1e-5)
    assert ((predicted > 0) & (predicted < 1)).all()
    with pytest.raises(MlflowException, match="missing inputs.*dest"):
        model.predict(test_rows.drop(columns=["dest"]))


class _Deploy:
    """`dualtune deploy` in a subprocess; its stdout read by a thread so waits stay bounded."""

    def __init__(self, root: Path, port: int) -> None:
        self.process = subprocess.Popen(
            dualtune_argv("deploy", "--port", str(port)),
            cwd=root,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_ready(self, timeout_s: float = 300) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and "Ctrl-C" not in " ".join(seen):
            if self.process.poll() is not None and self.lines.empty():
                pytest.fail(
                    f"deploy exited {self.process.returncode}: {self.process.stderr.read()}"
                )
            try:
                seen.append(self.lines.get(timeout=1))
            except queue.Empty:
                pass
        assert "Ctrl-C" in " ".join(seen), seen
        return seen


def _live_group_members(pgid: int) -> list[int]:
    """The processes of group pgid that still run (an orphan's zombie is init's to reap)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _post(url: str, headers: dict[str, str], body: str) -> list:
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())["predictions"]


def _curl_parts(line: str) -> tuple[str, dict[str, str], str]:
    """(url, headers, body) of the printed curl command."""
    words = shlex.split(line)
    assert words[0] == "curl"
    header = words[words.index("-H") + 1].split(":", 1)
    url = next(w for w in words if w.startswith("http://127.0.0.1:"))
    return url, {header[0]: header[1].strip()}, words[words.index("-d") + 1]


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_deploy_serves_predict_and_curl_agree_and_sigterm_cleans_up(finalized, test_rows, tmp_path):
    port = free_port()
    deploy = _Deploy(finalized, port)
    try:
        lines = deploy.wait_ready()
        curl = next(ln.strip() for ln in lines if ln.strip().startswith("curl "))
        url, headers, body = _curl_parts(curl)
        assert url == f"http://127.0.0.1:{port}/invocations"
        (example,) = _post(url, headers, body)  # the printed request, as printed
        assert 0 < example["pred"] < 1
        deployment = json.loads((finalized / "studies" / STUDY / "deployment.json").read_text())
        server_pid = deployment["pid"]

        test_rows.to_csv(tmp_path / "rows.csv", index=False)
        asked = _cli(finalized, "predict", "--instances", str(tmp_path / "rows.csv"), timeout=300)
        assert asked.returncode == 0, asked.stderr
        by_cli = [float(x) for x in asked.stdout.split()]
        records = json.loads(test_rows.to_json(orient="records"))
        raw = _post(url, headers, json.dumps({"dataframe_records": records}))
        assert by_cli == pytest.approx([r["pred"] for r in raw], abs=1e-7)
        expected = _keras_predictions(finalized, test_rows, tmp_path)
        assert by_cli == pytest.approx(list(expected), abs=1e-5)

        busy = _cli(finalized, "deploy", "--port", str(port), timeout=120)
        assert busy.returncode == 2
        assert busy.stderr.strip().splitlines() == [busy.stderr.strip()]
        assert f"--port {port}" in busy.stderr and "in use" in busy.stderr
    finally:
        # SIGTERM to a worker thread, not the main one (the kernel's choice under load), then a
        # second signal, which must not cut the cleanup short.
        signal_another_thread(deploy.process.pid, signal.SIGTERM)
        deploy.process.send_signal(signal.SIGINT)
        deploy.process.wait(timeout=60)
    stderr = deploy.process.stderr.read()
    assert deploy.process.returncode == 0 and "Traceback" not in stderr, stderr
    assert _live_group_members(server_pid) == []  # the server's whole process group is gone
    assert _port_free(port)
    assert not (finalized / "studies" / STUDY / "deployment.json").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: rows.drop(columns=["carrier"]), "lacks feature column 'carrier'"),
        (lambda rows: rows.assign(ontime=1.0), "has column 'ontime', which the model does not"),
    ],
    ids=["missing", "extra"],
)
def test_predict_refuses_a_missing_or_extra_column(finalized, test_rows, tmp_path, change, message):
    path = tmp_path / "rows.json"
    path.write_text(
        json.dumps({"instances": json.loads(change(test_rows).to_json(orient="records"))})
    )
    # --url: no server needs to run; the instances are refused before anything is sent.
    done = _cli(finalized, "predict", "--url", "http://127.0.0.1:9", "--instances", str(path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert "rows.json" in done.stderr and "Traceback" not in done.stderr


def test_deploy_and_predict_before_finalize_name_the_fix(tmp_path):
    tune = _cli(
        tmp_path,
        "tune",
        "--space",
        str(FIXTURES / "toy.yaml"),
        "--study",
        "raw",
        "--max-trials",
        "1",
    )
    assert tune.returncode == 0, tune.stderr
    done = _cli(tmp_path, "deploy", "--port", str(free_port()), timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "no finalized model yet" in done.stderr
    assert "dualtune finalize --study raw" in done.stderr
    assert not (tmp_path / "studies" / "raw" / "serve.log").exists()
    (tmp_path / "rows.csv").write_text("x\n1\n")
    asked = _cli(tmp_path, "predict", "--instances", str(tmp_path / "rows.csv"), timeout=120)
    assert asked.returncode == 2 and "dualtune deploy --study raw" in asked.stderr


def test_dualtune_help_lists_deploy_and_predict():
    done = subprocess.run(
        [sys.executable, "-m", "dualtune.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert "deploy" in done.stdout and "predict" in done.stdout


def test_a_trainer_without_features_json_gets_columns_from_its_model(tmp_path):
    """A Sequential model on one (batch, 2) input, no features.json: one column per input
    value, named after the input, and the pyfunc predicts what Keras predicts."""
    import keras
    import mlflow.pyfunc
    import numpy as np

    from dualtune.model_export import save_pyfunc

    model = keras.Sequential([keras.Input((2,), name="xy"), keras.layers.Dense(1)])
    (tmp_path / "trained").mkdir()
    model.save(tmp_path / "trained" / "model.keras")
    save_pyfunc(tmp_path / "trained", tmp_path / "logged")
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "logged"))
    assert loaded.metadata.signature.inputs.input_names() == ["xy_0", "xy_1"]
    rows = pd.DataFrame({"xy_0": [0.5, -1.0], "xy_1": [2.0, 0.25]})
    expected = model.predict(rows.to_numpy(dtype=np.float32), verbose=0)[:, 0]
    assert loaded.predict(rows)["prediction"].to_numpy() == pytest.approx(expected, abs=1e-6)
