"""The vertex backend through the real aiplatform SDK over HTTP against the local Vertex emulator.

No mocks: the CLI runs in a subprocess (`dualtune tune --backend vertex --emulator URL`), trials
run as the emulator's processes, and MLflow is read back through MlflowClient. Trainers are the
stdlib toy trainer (tests/fixtures/toy_trainer.py) and, for finalize only, a tiny package that
saves a tiny Keras model. The backend polls every emulator_client.POLL_S (or less, in process).
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from backends.base import (
    COMPLETED,
    FAILED,
    Measured,
    StudyEnded,
    StudyRequest,
    StudyStarted,
    TrialEnded,
    TrialStarted,
)
from tests.conftest import FIXTURES, TOY_TRAINER, dualtune_argv, mlflow_study_runs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    # Keras Tuner 1.4.8 (the emulator's Bayesian suggestions) uses deprecated threading names.
    pytest.mark.filterwarnings(r"ignore:(currentThread|getName)\(\) is deprecated"),
]

# Grid over 2 x 2 values: x=0.75 fails under --fail_above=0.5 after its first epoch.
GRID_SPACE = f"""
name: toy
metric: {{tag: val_rmse, goal: minimize}}
parameters:
  x: {{type: discrete, values: [0.25, 0.75]}}
  units: {{type: integer, min: 8, max: 9}}
trainer:
  script: {TOY_TRAINER}
  tuning_args: ["--num_epochs=3"]
budget: {{max_trials: 4, parallel_trials: 2, max_failed_trials: 2}}
algorithm: grid
"""

SECRET = "s3cret-t0ken"

# A module trainer (packaged as an sdist by the backend) that saves a tiny Keras model when asked.
TINY_KERAS_TASK = """
import argparse, os
import hypertune

p = argparse.ArgumentParser()
p.add_argument("--x", type=float, default=0.5)
p.add_argument("--units", type=lambda s: int(float(s)), default=4)
p.add_argument("--act", default="relu")
p.add_argument("--num_epochs", type=int, default=2)
p.add_argument("--save_model", action="store_true")
p.add_argument("--seed", type=int, default=0)  # the space's seed_flag
a = p.parse_args()
ht = hypertune.HyperTune()
for epoch in range(1, a.num_epochs + 1):
    value = (a.x - 0.3) ** 2 + 1.0 / a.units + 1.0 / epoch
    ht.report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag="val_rmse", metric_value=value, global_step=epoch)
if a.save_model:
    import keras
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(a.units, activation=a.act),
                              keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model_dir = os.environ["AIP_MODEL_DIR"]
    os.makedirs(model_dir, exist_ok=True)
    model.save(os.path.join(model_dir, "model.keras"))
    model.export(os.path.join(model_dir, "saved_model"), verbose=False)
"""


_EMULATOR = pytest.StashKey()


@pytest.fixture(scope="session")
def emulator(request, tmp_path_factory):
    """One emulator for the session, shared with test_parity.py (which imports this fixture)."""
    from vertex_emulator import start

    em = request.config.stash.get(_EMULATOR, None)
    if em is None:
        em = start(
            workdir=tmp_path_factory.mktemp("vertex-emulator"),
            grace_s=1.0,
            poll_s=0.05,
            bayesian="keras_tuner",  # fast: tests/backends/test_vizier.py runs Vizier's GP
        )
        request.config.stash[_EMULATOR] = em
        request.config.add_cleanup(em.stop)
    return em


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> str:
    """One MLflow store for these tests (each test has its own studies): creating a SQLite
    store's tables takes seconds, paid once."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()
    return uri


@pytest.fixture
def vertex_env(emulator, monkeypatch):
    """The emulator's environment in this process; no emulator URL inherited from outside."""
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DUALTUNE_VERTEX_EMULATOR", raising=False)
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess."""
    return subprocess.run(dualtune_argv(*args), capture_output=True, text=True, timeout=timeout)


def in_process(*args: str) -> int:
    """The real CLI's main() in this process, where the heavy imports are already paid for."""
    from dualtune.cli import main

    return main(list(args))


def write_toy_space(directory: Path, text: str | None = None) -> Path:
    """toy.yaml with its trainer path made absolute, so the copy works from anywhere."""
    if text is None:
        text = (FIXTURES / "toy.yaml").read_text().replace("toy_trainer.py", str(TOY_TRAINER))
    path = directory / "space.yaml"
    path.write_text(text)
    return path


def get_job(emulator, name: str) -> dict:
    with urllib.request.urlopen(
        urllib.request.Request(f"{emulator.url}/v1/{name}", headers=emulator.headers()), timeout=10
    ) as answer:
        return json.loads(answer.read())


def recorded_job(directory: Path, study: str) -> str:
    return json.loads((directory / "studies" / study / "study.json").read_text())["job"]


def mlflow_runs(uri: str, study: str):
    client = MlflowClient(uri)
    runs = mlflow_study_runs(client, study)
    parents = [r for r in runs if r.data.tags.get("dualtune.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("dualtune.role") == "trial"]
    return client, parents, trials


def points(client, trials) -> dict[str, list[int]]:
    return {
        r.data.tags["dualtune.trial_id"]: sorted(
            m.step for m in client.get_metric_history(r.info.run_id, "val_rmse")
        )
        for r in trials
    }


# -- the CLI end to end ---------------------------------------------------------------------------
def test_tune_records_each_trial_epoch_and_failure_in_mlflow(vertex_env, store, isolated):
    space = write_toy_space(isolated, GRID_SPACE)
    done = run_cli(
        "tune", "--backend", "vertex", "--emulator", vertex_env.url, "--space", str(space),
        "--study", "grid", "--tracking-uri", store, "--env", f"API_TOKEN={SECRET}",
        "--", "--fail_above=0.5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = recorded_job(isolated, "grid")
    assert get_job(vertex_env, job)["state"] == "JOB_STATE_SUCCEEDED"
    client, parents, trials = mlflow_runs(store, "grid")
    assert len(parents) == 1 and parents[0].data.tags["dualtune.study_key"] == job
    assert "dualtune.console_url" not in parents[0].data.tags  # the emulator has no console
    assert len(trials) == 4
    steps = points(client, trials)
    seen = set()
    for run in trials:
        params, tags = run.data.params, run.data.tags
        seen.add((params["x"], params["units"]))
        assert params["units"] in ("8", "9")  # cast back from Vertex's 8.0
        if params["x"] == "0.75":
            assert tags["dualtune.status"] == FAILED and run.info.status == "FAILED"
            assert "toy failure on purpose" in tags["dualtune.failure_reason"]
            assert steps[tags["dualtune.trial_id"]] == [1]
        else:
            assert tags["dualtune.status"] == COMPLETED and run.info.status == "FINISHED"
            assert steps[tags["dualtune.trial_id"]] == [1, 2, 3]
    assert seen == {("0.25", "8"), ("0.25", "9"), ("0.75", "8"), ("0.75", "9")}
    for run in (*parents, *trials):  # what trials get in their environment stays out of MLflow
        assert SECRET not in json.dumps([run.data.params, run.data.tags])
    assert SECRET not in (isolated / "studies" / "grid" / "study.json").read_text()


def test_ctrl_c_cancels_the_job(vertex_env, store, isolated):
    space = write_toy_space(isolated)
    proc = subprocess.Popen(
        dualtune_argv(
            "tune", "--backend", "vertex", "--emulator", vertex_env.url, "--space", str(space),
            "--study", "cancelled", "--tracking-uri", store, "--", "--epoch_seconds=3",
        ),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        while "epoch 1" not in lines.get(timeout=90):  # a trial is measuring: interrupt it
            pass
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 130
    finally:
        proc.kill()
    job = get_job(vertex_env, recorded_job(isolated, "cancelled"))
    assert job["state"] == "JOB_STATE_CANCELLED"
    _, parents, trials = mlflow_runs(store, "cancelled")
    assert parents[0].info.status == "KILLED"
    assert trials and {r.data.tags["dualtune.status"] for r in trials} == {"STOPPED"}


def test_detach_then_attach_brings_mlflow_up_to_date_without_duplicates(
    vertex_env, store, isolated, capsys
):
    space = write_toy_space(isolated)
    done = run_cli(
        "tune", "--backend", "vertex", "--emulator", vertex_env.url, "--space", str(space),
        "--study", "detached", "--tracking-uri", store, "--detach",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = recorded_job(isolated, "detached")
    assert f"dualtune attach {job}" in done.stdout
    assert in_process("attach", job, "--tracking-uri", store) == 0  # the record knows where
    assert get_job(vertex_env, job)["state"] == "JOB_STATE_SUCCEEDED"
    client, parents, trials = mlflow_runs(store, "detached")
    first = points(client, trials)
    assert len(parents) == 1 and len(trials) == 3
    assert all(steps == [1, 2, 3] for steps in first.values())
    bare_id = job.rsplit("/", 1)[-1]
    assert in_process("attach", bare_id, "--emulator", vertex_env.url, "--tracking-uri", store) == 0
    client, parents, trials = mlflow_runs(store, "detached")
    assert len(parents) == 1 and len(trials) == 3
    assert points(client, trials) == first
    assert "study detached COMPLETED" in capsys.readouterr().out


def test_finalize_on_vertex_registers_a_model_version(vertex_env, store, isolated, capsys):
    package = isolated / "tinykeras"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "task.py").write_text(TINY_KERAS_TASK)
    space = write_toy_space(
        isolated,
        (FIXTURES / "toy.yaml")
        .read_text()
        .replace("script: toy_trainer.py", "module: tinykeras.task")
        .replace('["--num_epochs=4"]', '["--num_epochs=2", "--save_model"]')
        .replace("max_trials: 3, parallel_trials: 2", "max_trials: 2, parallel_trials: 2"),
    )
    url = vertex_env.url
    common = ("--backend", "vertex", "--emulator", url, "--study", "fin", "--tracking-uri", store)
    assert in_process("tune", "--space", str(space), *common) == 0  # the trainer as an sdist
    assert in_process("finalize", *common) == 0
    assert "model fin version 1 registered" in capsys.readouterr().out
    client = MlflowClient(store)
    (version,) = client.search_model_versions("name='fin'")
    run = client.get_run(version.run_id)
    assert run.data.tags["dualtune.backend"] == "vertex"
    history = client.get_metric_history(run.info.run_id, "val_rmse")
    assert sorted(m.step for m in history) == [1, 2]  # read from the mapped hypertune file
    # ... and uploaded to the emulator's Model Registry, linked from the finalize run.
    vertex_model = run.data.tags["dualtune.vertex_model"]
    assert run.data.tags["dualtune.vertex_model_version"] == "1"
    assert get_job(vertex_env, vertex_model)["labels"]["dualtune-study"] == "fin"


# -- in process: retries and errors ---------------------------------------------------------------
def toy_request(tmp_path: Path, study: str, **budget) -> StudyRequest:
    import dataclasses

    from search_spaces.loader import load_space

    space = load_space(FIXTURES / "toy.yaml")
    if budget:
        space = dataclasses.replace(space, budget=dataclasses.replace(space.budget, **budget))
    return StudyRequest(study, space, tmp_path / study, extra_args=("--num_epochs=1",))


def make_backend(emulator, **options):
    from backends.vertex import RetryPolicy, VertexBackend

    options.setdefault("retry", RetryPolicy(initial_s=0.05, maximum_s=0.2, deadline_s=10))
    return VertexBackend(
        emulator.project, emulator.location, emulator.bucket, api_endpoint=emulator.url,
        poll_s=0.1, storage_endpoint=emulator.storage_url,
        token_file=str(emulator.token_file), **options,
    )  # fmt: skip


def test_the_job_request_carries_what_the_sdk_constructor_cannot(vertex_env, isolated):
    import dataclasses

    from search_spaces.model import EarlyStopping

    request = toy_request(isolated, "shape")
    space = dataclasses.replace(request.space, early_stopping=EarlyStopping(policy="median"))
    backend = make_backend(vertex_env)
    name = backend.submit(dataclasses.replace(request, space=space), lambda e: None)
    job = get_job(vertex_env, name)
    backend.session.api().cancel_tuning_job(name)
    study = job["studySpec"]
    assert "medianAutomatedStoppingSpec" in study and study["algorithm"] == "RANDOM_SEARCH"
    assert study["measurementSelectionType"] == "BEST_MEASUREMENT"
    # Local fails a study at MORE than max_failed_trials failures, Vertex when it REACHES its count.
    assert job["maxFailedTrialCount"] == space.budget.max_failed_trials + 1
    (pool,) = job["trialJobSpec"]["workerPoolSpecs"]
    package = pool["pythonPackageSpec"]  # a prebuilt image: Vertex's flags reach the trainer
    assert package["executorImageUri"].startswith("us-docker.pkg.dev/vertex-ai/training/tf-cpu.")
    assert package["args"] == ["--num_epochs=3", "--num_epochs=1"]  # tuning args, then extra


def test_transient_429_and_503_answers_are_retried(vertex_env, isolated, caplog):
    vertex_env.inject_faults(503, 2, r"/hyperparameterTuningJobs$", "POST")
    vertex_env.inject_faults(429, 1, r"/hyperparameterTuningJobs/\d+$", "GET")
    vertex_env.inject_faults(503, 2, r"/hyperparameterTuningJobs/\d+$", "GET")
    events: list = []
    with caplog.at_level(logging.WARNING, logger="backends.vertex.calls"):
        ended = make_backend(vertex_env).run(
            toy_request(isolated, "retried", max_trials=1, parallel_trials=1), events.append
        )
    assert ended.status == COMPLETED
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 5
    kinds = [type(e) for e in events]
    assert kinds == [StudyStarted, TrialStarted, Measured, TrialEnded, StudyEnded]


@pytest.mark.parametrize(
    ("status", "match"),
    [
        (403, "permission denied.*roles/aiplatform.user"),
        (400, "refused the request"),
        (429, "quota exhausted in us-central1.*quota"),
    ],
)
def test_api_errors_end_with_one_clear_line(vertex_env, isolated, status, match):
    from backends.vertex import RetryPolicy
    from trialkit.errors import BackendError

    vertex_env.inject_faults(status, 100, r"/hyperparameterTuningJobs$", "POST")
    backend = make_backend(vertex_env, retry=RetryPolicy(0.05, 0.1, deadline_s=0.5))
    events: list = []
    with pytest.raises(BackendError, match=match) as raised:
        backend.run(toy_request(isolated, f"refused-{status}"), events.append)
    assert "\n" not in str(raised.value)
    assert events == []  # nothing was created, nothing recorded


def test_attaching_to_a_missing_job_names_what_to_check(vertex_env, isolated):
    from trialkit.errors import BackendError

    missing = f"projects/{vertex_env.project}/locations/us-central1/hyperparameterTuningJobs/9"
    with pytest.raises(BackendError, match="not found.*check --project, --region"):
        make_backend(vertex_env).attach(missing, toy_request(isolated, "m"), lambda e: None)


def test_a_failed_job_ends_the_cli_with_one_line(vertex_env, store, isolated, capsys):
    space = write_toy_space(isolated, GRID_SPACE.replace("failed_trials: 2", "failed_trials: 0"))
    code = in_process(
        "tune", "--backend", "vertex", "--emulator", vertex_env.url, "--space", str(space),
        "--study", "doomed", "--parallel-trials", "1", "--tracking-uri", store,
        "--", "--fail_above=0.0",
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("dualtune: study doomed: the Vertex job failed:")
    assert "dualtune trials --study doomed" in err
    assert recorded_job(isolated, "doomed")  # the record keeps the job for a look later


def test_vertex_without_emulator_requires_project_region_and_bucket(isolated, monkeypatch, capsys):
    monkeypatch.delenv("DUALTUNE_VERTEX_EMULATOR", raising=False)
    space = write_toy_space(isolated)
    base = ["tune", "--backend", "vertex", "--space", str(space), "--study", "s"]
    assert in_process(*base) == 2
    assert "--project: required with --backend vertex" in capsys.readouterr().err
    assert not (isolated / "studies" / "s").exists()  # nothing submitted: no study left behind
    flags = ["--project", "p", "--region", "us-central1", "--staging-bucket", "bucket"]
    assert in_process(*base, *flags) == 2
    assert "--staging-bucket: 'bucket' is not a Cloud Storage URI" in capsys.readouterr().err


def test_default_image_matches_tensorflow_and_region(caplog):
    from backends.vertex import default_container_uri

    assert default_container_uri("europe-west4", gpu=True, tf_version="2.15.1") == (
        "europe-docker.pkg.dev/vertex-ai/training/tf-gpu.2-15.py310:latest"
    )
    with caplog.at_level("WARNING", logger="backends.vertex.packaging"):
        for _ in range(3):  # a study submits a job per baseline and confirmation run
            assert default_container_uri("us-central1", gpu=False, tf_version="2.98.0") == (
                "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest"
            )
    assert len(caplog.messages) == 1  # said once, not once per job
    assert "no prebuilt Vertex training image for TensorFlow 2.98" in caplog.messages[0]
