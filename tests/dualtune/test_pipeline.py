"""`dualtune pipeline`: tune -> finalize (-> deploy) as one command that picks up where it
stopped. Real processes throughout: the CLI in a subprocess (killed for real with SIGKILL), the
local backend's trials, a real MLflow store, the vertex backend against the emulator. The
trainer is a tiny package that reports a toy metric and saves a tiny Keras model when finalized.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from dualtune.cli import main
from dualtune.study_record import create
from tests.backends import test_vertex
from tests.conftest import FIXTURES, dualtune_argv, free_port, mlflow_study_runs

# The vertex tests' fixtures (one emulator for the session), as tests/backends/test_parity.py.
emulator, vertex_env, store = test_vertex.emulator, test_vertex.vertex_env, test_vertex.store

TINY_KERAS_TASK = test_vertex.TINY_KERAS_TASK.replace(
    'p.add_argument("--save_model", action="store_true")',
    'p.add_argument("--save_model", action="store_true")\n'
    'p.add_argument("--epoch_seconds", type=float, default=0.0)',
).replace(
    "for epoch in range(1, a.num_epochs + 1):\n",
    "import time\nfor epoch in range(1, a.num_epochs + 1):\n    time.sleep(a.epoch_seconds)\n",
)


def tiny_keras_space(directory: Path, finalize_epoch_s: float = 0.0) -> Path:
    """toy.yaml over the tiny Keras package (2 trials); its finalize saves a model."""
    package = directory / "tinykeras"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "task.py").write_text(TINY_KERAS_TASK)
    finalize = f'["--num_epochs=2", "--save_model", "--epoch_seconds={finalize_epoch_s}"]'
    text = (
        (FIXTURES / "toy.yaml")
        .read_text()
        .replace("script: toy_trainer.py", "module: tinykeras.task")
        .replace('["--num_epochs=4"]', finalize)
        .replace("max_trials: 3, parallel_trials: 2", "max_trials: 2, parallel_trials: 2")
    )
    path = directory / "space.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def tiny(isolated, monkeypatch) -> Path:
    """The tiny package importable by trials (PYTHONPATH) and its space file."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(isolated), os.environ["PYTHONPATH"]]))
    return tiny_keras_space(isolated, finalize_epoch_s=2.0)


def pipeline_section(directory: Path, study: str) -> dict:
    try:
        meta = json.loads((directory / "studies" / study / "study.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return meta.get("pipeline") or {}


def runs_by_role(client: MlflowClient, study: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for run in mlflow_study_runs(client, study):
        found.setdefault(run.data.tags.get("dualtune.role"), []).append(run)
    return found


def wait_for(what: str, check, timeout_s: float, proc: subprocess.Popen) -> None:
    """Poll `check` (bounded in time) while `proc` runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the pipeline ended ({proc.returncode}) before {what}: {err[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {what} within {timeout_s}s")


def kill_when(what: str, check, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    """SIGKILL proc (no handler of its own runs) once `check` holds; killed whatever happens."""
    try:
        wait_for(what, check, timeout_s, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


# -- end to end ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pipeline_killed_during_finalize_finishes_without_tuning_again(isolated, tiny):
    uri = f"sqlite:///{isolated / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.search_experiments()  # the store's tables, made before the pipeline opens it
    argv = dualtune_argv(
        "pipeline", "--space", str(tiny), "--study", "pipe", "--tracking-uri", uri,
        "--no-baseline", "--no-confirm",  # tune's trust flags, given again on every run
    )  # fmt: skip
    # Its finalize trainer dies with it (PR_SET_PDEATHSIG, backends/local/process.py).
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # Finalize is running and its MLflow run exists: a SIGKILL now leaves it RUNNING.
    def finalizing() -> bool:
        step = pipeline_section(isolated, "pipe").get("steps", {}).get("finalize", {})
        return step.get("state") == "running" and bool(runs_by_role(client, "pipe").get("finalize"))

    kill_when("a running finalize", finalizing, first)
    assert first.returncode == -signal.SIGKILL
    before = runs_by_role(client, "pipe")
    (killed,) = before["finalize"]
    assert killed.info.status == "RUNNING"
    assert "baseline" not in before and "confirmation" not in before  # --no-baseline, --no-confirm
    assert not client.search_model_versions("name = 'pipe'")
    tune_step = pipeline_section(isolated, "pipe")["steps"]["tune"]
    assert tune_step["state"] == "done" and tune_step["status"] == "COMPLETED"

    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "tune: done" in again.stdout and "skipped" in again.stdout
    after = runs_by_role(client, "pipe")
    # No tuning again: the same trial runs, the tune step's record untouched.
    trial_ids = sorted(r.info.run_id for r in before["trial"])
    assert sorted(r.info.run_id for r in after["trial"]) == trial_ids
    section = pipeline_section(isolated, "pipe")
    assert section["steps"]["tune"] == tune_step
    # The killed finalize run ended FAILED with why; the one version is the new run's.
    assert client.get_run(killed.info.run_id).info.status == "FAILED"
    assert "interrupted" in client.get_run(killed.info.run_id).data.tags["dualtune.reason"]
    (version,) = client.search_model_versions("name = 'pipe'")
    assert version.run_id != killed.info.run_id
    assert client.get_run(version.run_id).info.status == "FINISHED"
    step = section["steps"]["finalize"]
    assert step["state"] == "done" and step["version"] == str(version.version) == "1"
    assert step["run_id"] == version.run_id

    # Once more: every step done, nothing runs, nothing is registered.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finalize: done (model pipe version 1" in done.stdout
    assert len(client.search_model_versions("name = 'pipe'")) == 1
    assert len(runs_by_role(client, "pipe")["finalize"]) == 2


@pytest.mark.slow
def test_a_killed_plain_finalize_is_settled_by_the_next(isolated, tiny):
    """Not the pipeline: `dualtune finalize` killed (SIGKILL: no handler runs) leaves its run
    RUNNING; the next finalize of the study sees that its process is gone and ends it."""
    uri = f"sqlite:///{isolated / 'mlflow.db'}"
    client = MlflowClient(uri)
    common = ("--study", "plain", "--tracking-uri", uri)
    tune = subprocess.run(
        dualtune_argv("tune", "--space", str(tiny), *common),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tune.returncode == 0, tune.stderr[-3000:]
    first = subprocess.Popen(
        dualtune_argv("finalize", *common), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    kill_when("a finalize run", lambda: bool(runs_by_role(client, "plain").get("finalize")), first)
    (killed,) = runs_by_role(client, "plain")["finalize"]
    assert killed.info.status == "RUNNING"
    assert killed.data.tags["dualtune.finalize_process"].split(":")[1] == str(first.pid)

    again = subprocess.run(
        dualtune_argv("finalize", *common, "--", "--epoch_seconds=0"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"run {killed.info.run_id} was left RUNNING by a finalize that is gone" in again.stdout
    settled = client.get_run(killed.info.run_id)
    assert settled.info.status == "FAILED"
    assert f":{first.pid}) ended without ending the run" in settled.data.tags["dualtune.reason"]
    (version,) = client.search_model_versions("name = 'plain'")
    assert version.run_id != killed.info.run_id
    assert client.get_run(version.run_id).info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.e2e
def test_pipeline_with_deploy_registers_serves_and_stops_on_sigterm(isolated, tiny):
    uri = f"sqlite:///{isolated / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.search_experiments()
    port = free_port()
    argv = dualtune_argv(
        "pipeline", "--space", str(tiny), "--study", "served", "--tracking-uri", uri,
        "--deploy", "--port", str(port),
    )  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deployment = isolated / "studies" / "served" / "deployment.json"
    try:
        wait_for("a served model", deployment.is_file, 300, proc)
        steps = pipeline_section(isolated, "served")["steps"]
        assert steps["tune"]["state"] == steps["finalize"]["state"] == "done"
        assert steps["deploy"] == {**steps["deploy"], "state": "running", "version": "1"}
        assert steps["deploy"]["url"] == f"http://127.0.0.1:{port}"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    (version,) = client.search_model_versions("name = 'served'")
    deploy = pipeline_section(isolated, "served")["steps"]["deploy"]
    assert deploy["state"] == "stopped" and deploy["version"] == str(version.version)
    assert not deployment.exists()
    import socket

    with socket.socket() as probe:  # nothing listens on the server's port any more
        # SO_REUSEADDR: closed connections in TIME_WAIT do not count, a listener does
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.filterwarnings(r"ignore:(currentThread|getName)\(\) is deprecated")
def test_pipeline_on_vertex_tunes_finalizes_and_deploys_in_one_command(
    vertex_env, store, isolated, capsys
):
    from google.cloud import aiplatform

    space = tiny_keras_space(isolated)
    common = ("--backend", "vertex", "--emulator", vertex_env.url, "--tracking-uri", store)
    deploy = ("--deploy", "--endpoint", "vpipe-endpoint", "--serving-machine-type", "n1-standard-4")
    assert main(["pipeline", "--space", str(space), "--study", "vpipe", *common, *deploy]) == 0
    steps = pipeline_section(isolated, "vpipe")["steps"]
    assert (
        steps["tune"]["state"] == steps["finalize"]["state"] == steps["deploy"]["state"] == "done"
    )
    assert pipeline_section(isolated, "vpipe")["backend"] == "vertex"
    client = MlflowClient(store)
    (version,) = client.search_model_versions("name = 'vpipe'")
    assert steps["finalize"]["version"] == steps["deploy"]["version"] == str(version.version)
    assert client.get_run(version.run_id).data.tags["dualtune.backend"] == "vertex"
    # The endpoint the deploy step records serves the finalized Vertex model version.
    aiplatform.init(**vertex_env.init_kwargs())
    (endpoint,) = aiplatform.Endpoint.list(filter='display_name="vpipe-endpoint"')
    assert steps["deploy"]["endpoint"] == endpoint.resource_name
    (deployed,) = endpoint.list_models()
    assert deployed.id == steps["deploy"]["deployed_model_id"]
    assert f"{deployed.model}@{deployed.model_version_id}" == steps["deploy"]["model"]
    assert endpoint.traffic_split == {deployed.id: 100}
    assert deployed.dedicated_resources.machine_spec.machine_type == "n1-standard-4"
    # The record keeps where finalize put the model: `dualtune deploy` defaults to vertex.
    meta = json.loads((isolated / "studies" / "vpipe" / "study.json").read_text())
    assert meta["finalized"] == {"backend": "vertex", "vertex_model": steps["deploy"]["model"]}
    capsys.readouterr()
    # Run again: every step is done, nothing is tuned, finalized or deployed again.
    assert main(["pipeline", "--study", "vpipe", *common, "--deploy"]) == 0
    out = capsys.readouterr().out
    assert f"deploy: done (endpoint {endpoint.resource_name}); skipped" in out
    assert len(client.search_model_versions("name = 'vpipe'")) == 1
    assert len(aiplatform.Endpoint(endpoint.resource_name).list_models()) == 1
    # Run again on another backend: refused, one line, nothing run.
    assert (
        main(["pipeline", "--study", "vpipe", "--backend", "local", "--tracking-uri", store]) == 2
    )
    assert len(client.search_model_versions("name = 'vpipe'")) == 1


# -- bad input: one line, exit 2, before anything runs ---------------------------------------------
def recorded_study(directory: Path, name: str, backend: str = "local") -> None:
    """A study record as `dualtune tune` leaves it (no trial needed to refuse a flag)."""
    meta = {
        "backend": backend,
        "algorithm": "random",
        "budget": {"max_trials": 3, "parallel_trials": 2, "max_failed_trials": 1},
        "space_source": str(FIXTURES / "toy.yaml"),
        "trainer": {"script": "toy_trainer.py"},
        "extra_args": [],
    }
    create(directory / "studies", name, FIXTURES / "toy.yaml", meta)


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--backend", "vertex"], r"--backend vertex: study old ran on local; .*--backend local"),
        (["--max-trials", "5"], r"--max-trials: study old was tuned with 3, not 5"),
        (["--algorithm", "grid"], r"--algorithm: study old was tuned with 'random'"),
        (["--no-baseline"], r"--no-baseline: study old was tuned with 'baseline', not 'no basel"),
        (["--executions-per-trial", "3"], r"--executions-per-trial: study old was tuned with 1,"),
        (["--port", "5002"], r"--port: a deploy flag without --deploy"),
        (["--endpoint", "e"], r"--endpoint: a deploy flag without --deploy"),
        (["--deploy", "--backend", "vertex", "--port", "5002"], r"--port: a local deploy flag;"),
        (["--deploy", "--traffic-percent", "50"], r"--traffic-percent: a vertex deploy flag;"),
    ],
)
def test_bad_pipeline_input_is_one_line_and_exit_2(isolated, capsys, flags, match):
    import re

    recorded_study(isolated, "old")
    before = (isolated / "studies" / "old" / "study.json").read_text()
    place = ["--project", "p", "--region", "us-central1", "--staging-bucket", "gs://b"]
    emulator_flag = place if "vertex" in flags else []
    assert main(["pipeline", "--study", "old", *flags, *emulator_flag]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    assert (isolated / "studies" / "old" / "study.json").read_text() == before


def test_deploy_on_a_taken_port_is_refused_before_tuning(isolated, capsys):
    import socket

    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        code = main(["pipeline", "--space", str(FIXTURES / "toy.yaml"), "--study", "new",
                     "--deploy", "--port", str(port)])  # fmt: skip
    assert code == 2
    assert f"--port {port}: 127.0.0.1:{port} is in use" in capsys.readouterr().err
    assert not (isolated / "studies" / "new").exists()


def test_a_killed_finalize_that_had_registered_its_version_is_kept(isolated, capsys):
    """Killed between registering its version and ending its run: the next pipeline run keeps
    that version (registering is finalize's last step) and trains nothing."""
    from dualtune import mlflow_layout as layout
    from dualtune.study_record import StudyRecord

    uri = f"sqlite:///{isolated / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = layout.ensure_space_experiment(client, "toy", None)
    tags = {"dualtune.role": "finalize", "dualtune.study": "adopt", "dualtune.best_trial_id": "2"}
    run = client.create_run(experiment, run_name="local/adopt/finalize", tags=tags)
    client.create_registered_model("adopt")
    client.create_model_version("adopt", f"runs:/{run.info.run_id}/model", run.info.run_id)
    recorded_study(isolated, "adopt")
    steps = {
        "tune": {"state": "done", "status": "COMPLETED", "best_trial_id": "2"},
        "finalize": {"state": "running", "started": time.time() - 5},
    }
    section = {"backend": "local", "pid": 0, "host": "", "steps": steps}
    StudyRecord(isolated / "studies" / "adopt").update(status="COMPLETED", pipeline=section)

    assert main(["pipeline", "--study", "adopt", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert f"finalize run {run.info.run_id} had registered version 1; kept" in out
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    step = pipeline_section(isolated, "adopt")["steps"]["finalize"]
    assert (step["state"], step["version"], step["run_id"]) == ("done", "1", run.info.run_id)
    assert step["trial_id"] == "2"
    assert len(client.search_model_versions("name = 'adopt'")) == 1
    assert len(runs_by_role(client, "adopt")["finalize"]) == 1  # nothing trained again


def test_a_second_pipeline_of_a_running_one_is_refused(isolated, capsys):
    import socket

    from dualtune.study_record import StudyRecord

    recorded_study(isolated, "busy")
    alive = os.getppid()  # a live process that is not this one: the "other pipeline"
    steps = {"tune": {"state": "running"}}
    section = {"backend": "local", "pid": alive, "host": socket.gethostname(), "steps": steps}
    StudyRecord(isolated / "studies" / "busy").update(pipeline=section)
    assert main(["pipeline", "--study", "busy"]) == 2
    err = capsys.readouterr().err
    assert f"a pipeline of study busy is running (pid {alive}); wait for it" in err
