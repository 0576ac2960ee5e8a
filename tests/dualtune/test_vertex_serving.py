"""From a finalized model to a Vertex endpoint, against the emulator through the real SDK:
finalize --backend vertex uploads the SavedModel to the Model Registry (a second finalize adds
a version to the same model), deploy creates the endpoint once and reuses it after, and the
endpoint's predictions (SDK and `dualtune predict`) are the finalized Keras model's.

One tiny study is tuned locally (1 trial) and finalized twice on vertex for the module.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, dualtune_argv

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.filterwarnings(r"ignore:(currentThread|getName)\(\) is deprecated"),
]

TINY = ["--num_examples=2000", "--num_epochs=1"]
STUDY = "vserved"
SPACE = "flights"


def _env(emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


@pytest.fixture(scope="module")
def emulator(tmp_path_factory, flights_data):
    from vertex_emulator import start

    with start(
        workdir=tmp_path_factory.mktemp("vs-emulator"), grace_s=1.0, poll_s=0.05,
        bayesian="keras_tuner",
    ) as em:  # fmt: skip
        yield em


@pytest.fixture(scope="module")
def served(tmp_path_factory, emulator) -> Path:
    """A folder with studies/ and mlruns/: STUDY tuned locally, finalized twice on vertex."""
    root = tmp_path_factory.mktemp("vserved")

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            dualtune_argv(*args), cwd=root, env=_env(emulator), capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    cli("tune", "--study", STUDY, "--max-trials", "1", "--", *TINY)
    vertex = ("--backend", "vertex", "--emulator", emulator.url, "--study", STUDY)
    for _ in range(2):
        done = cli("finalize", *vertex, "--", *TINY)
        assert "Vertex model projects/" in done.stdout
    return root


@pytest.fixture
def sdk(emulator, monkeypatch):
    from google.cloud import aiplatform

    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    aiplatform.init(**emulator.init_kwargs())
    return aiplatform


def _uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def _main(root: Path, monkeypatch, *args: str) -> int:
    from dualtune.cli import main

    monkeypatch.chdir(root)
    return main(list(args))


def _rows(flights_data) -> pd.DataFrame:
    from trainer.data import FEATURES

    return pd.read_csv(flights_data["test"]).sample(4, random_state=11)[list(FEATURES)]


def _keras_predictions(root: Path, version: str, rows: pd.DataFrame, tmp_path: Path):
    import keras

    from trainer.data import to_tensors

    client = MlflowClient(_uri(root))
    (found,) = [
        v for v in client.search_model_versions(f"name = '{STUDY}'") if str(v.version) == version
    ]
    path = client.download_artifacts(found.run_id, "model/artifacts/model.keras", tmp_path)
    features, _ = to_tensors(rows.assign(ontime=0.0))
    return keras.saving.load_model(path).predict(features, verbose=0)[:, 0]


def _printed_python(out: str) -> str:
    """The lines deploy prints under "ready. Ask it from Python:", unindented."""
    lines = [line.strip() for line in out.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.endswith("Ask it from Python:")) + 1
    return "\n".join(lines[start : lines.index("or with curl:", start)])


def test_finalize_adds_versions_to_one_registered_model(served, sdk):
    (model,) = sdk.Model.list(filter=f'labels.dualtune-space="{SPACE}"')
    assert model.display_name == SPACE and model.version_id == "2"
    assert "default" in model.version_aliases
    first = sdk.Model(model.resource_name, version="1")
    assert first.labels["dualtune-study"] == STUDY and first.labels["dualtune-winner"]
    assert first.uri.endswith("/model/saved_model")
    assert "/vertex-ai/prediction/tf2-cpu.2-" in first.container_spec.image_uri
    client = MlflowClient(_uri(served))
    runs = [client.get_run(v.run_id) for v in client.search_model_versions(f"name='{STUDY}'")]
    tags = sorted(
        (r.data.tags["dualtune.vertex_model"], r.data.tags["dualtune.vertex_model_version"])
        for r in runs
    )
    assert tags == [(model.resource_name, "1"), (model.resource_name, "2")]


def test_deploy_creates_the_endpoint_once_and_predictions_match_keras(
    served, sdk, emulator, flights_data, tmp_path, monkeypatch, capsys
):
    common = ("deploy", "--backend", "vertex", "--emulator", emulator.url, "--study", STUDY)
    assert _main(served, monkeypatch, *common, "--model-version", "1") == 0
    first = capsys.readouterr().out
    assert "(created)" in first and "curl -s -X POST http://127.0.0.1:" in first
    snippet = _printed_python(first)
    asked_as_printed = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300
    )  # the snippet as printed, in a fresh interpreter: its own credentials, no others
    assert asked_as_printed.returncode == 0, asked_as_printed.stderr[-2000:]
    (printed_prediction,) = ast.literal_eval(asked_as_printed.stdout.strip())
    assert 0 < printed_prediction[0] < 1
    assert _main(served, monkeypatch, *common, "--machine-type", "n1-standard-4") == 0
    assert "(found)" in capsys.readouterr().out
    (endpoint,) = sdk.Endpoint.list(filter=f'display_name="{SPACE}"')
    deployed = {d.model_version_id: d for d in endpoint.list_models()}
    assert sorted(deployed) == ["1", "2"]  # the first stays deployed: nothing undeployed
    assert deployed["2"].dedicated_resources.machine_spec.machine_type == "n1-standard-4"
    assert endpoint.traffic_split == {deployed["2"].id: 100}  # the SDK's 100%: the rest 0

    rows = _rows(flights_data)
    records = json.loads(rows.to_json(orient="records"))
    answer = endpoint.predict(instances=[{k: [v] for k, v in r.items()} for r in records])
    assert answer.model_version_id == "2"
    expected = _keras_predictions(served, "2", rows, tmp_path)
    assert [p[0] for p in answer.predictions] == pytest.approx(list(expected), abs=1e-5)

    rows.to_csv(tmp_path / "rows.csv", index=False)
    asked = ("predict", "--backend", "vertex", "--emulator", emulator.url, "--study", STUDY)
    assert _main(served, monkeypatch, *asked, "--instances", str(tmp_path / "rows.csv")) == 0
    by_cli = [float(x) for x in capsys.readouterr().out.split()]
    assert by_cli == pytest.approx(list(expected), abs=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: rows.drop(columns=["carrier"]), "lacks feature column 'carrier'"),
        (lambda rows: rows.assign(ontime=1.0), "has column 'ontime', which the model does not"),
    ],
    ids=["missing", "extra"],
)
def test_predict_refuses_a_missing_or_extra_feature(
    served, emulator, flights_data, tmp_path, change, message
):
    path = tmp_path / "rows.csv"
    change(_rows(flights_data)).to_csv(path, index=False)
    done = subprocess.run(
        dualtune_argv("predict", "--backend", "vertex", "--emulator", emulator.url,
                      "--study", STUDY, "--instances", str(path)),
        cwd=served, env=_env(emulator), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr


def test_deploy_refuses_a_display_name_two_endpoints_carry(served, sdk, emulator, monkeypatch):
    twins = [sdk.Endpoint.create(display_name="twice") for _ in range(2)]
    done = subprocess.run(
        dualtune_argv("deploy", "--backend", "vertex", "--emulator", emulator.url,
                      "--study", STUDY, "--endpoint", "twice"),
        cwd=served, env=_env(emulator), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "--endpoint-id" in done.stderr
    assert all(t.resource_name in done.stderr for t in twins)
    assert all(not t.list_models() for t in twins)  # nothing deployed


def test_deploy_before_a_vertex_finalize_names_the_fix(emulator, tmp_path):
    from tests.conftest import FIXTURES

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            dualtune_argv(*args), cwd=tmp_path, env=_env(emulator), capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip

    tune = cli("tune", "--space", str(FIXTURES / "toy.yaml"), "--study", "raw", "--max-trials", "1")
    assert tune.returncode == 0, tune.stderr
    done = cli("deploy", "--backend", "vertex", "--emulator", emulator.url)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "no finalized model yet" in done.stderr and "dualtune finalize" in done.stderr
