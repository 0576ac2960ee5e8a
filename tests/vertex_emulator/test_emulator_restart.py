"""A killed emulator strands nothing: kill -9 of the real `dualtune emulator` process mid-study
leaves no replica or storage server running, and a restart on the same workdir and port
carries the study on; the `dualtune tune` that follows it ends properly, and `attach` and
`--resume` work afterwards. Also: a taken port is one line and exit 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import TOY_TRAINER, dualtune_argv, free_port, mlflow_study_runs

SPACE = f"""
name: toy
metric: {{tag: val_rmse, goal: minimize}}
parameters:
  x: {{type: discrete, values: [0.25, 0.5]}}
trainer:
  script: {TOY_TRAINER}
  tuning_args: ["--num_epochs=4", "--epoch_seconds=1.5"]
budget: {{max_trials: 2, parallel_trials: 1, max_failed_trials: 1}}
algorithm: grid
"""


def start_emulator(port: int, workdir: Path) -> subprocess.Popen:
    """The real CLI; returns once it says it listens (bounded: it dies or prints in time)."""
    process = subprocess.Popen(
        dualtune_argv("emulator", "--port", str(port), "--workdir", str(workdir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 90
    for line in process.stdout:  # ends at EOF if it dies
        if "Ctrl-C to stop" in line or time.monotonic() > deadline:
            break
    assert process.poll() is None, "the emulator did not start"
    return process


def get(url: str, token_file: Path) -> dict:
    token = token_file.read_text().strip()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def processes_in(workdir: Path) -> set[int]:
    """Live processes started for this emulator: its storage server and its replicas."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(workdir) in cmdline or cwd.startswith(str(workdir))):
            found.add(int(entry.name))
    return found


def wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s}s")


@pytest.mark.slow
@pytest.mark.e2e
def test_kill_9_then_restart_carries_the_study_on(tmp_path, isolated):
    port, workdir = free_port(), tmp_path / "emulator"
    url = f"http://127.0.0.1:{port}"
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    emulator = start_emulator(port, workdir)
    token_file = workdir / "token"
    jobs = f"{url}/v1/projects/dualtune-emulator/locations/us-central1/hyperparameterTuningJobs"
    tune = subprocess.Popen(
        dualtune_argv("tune", "--backend", "vertex", "--emulator", url, "--space", str(space),
                      "--study", "survives", "--tracking-uri", store),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:

        def measured() -> bool:
            listed = get(jobs, token_file).get("hyperparameterTuningJobs", [])
            trials = listed[0].get("trials", []) if listed else []
            return bool(trials and trials[0].get("measurements"))

        wait_until(measured, 120, "trial 1 measured")
        children = processes_in(workdir)
        assert len(children) >= 2  # the storage server and trial 1
        emulator.send_signal(signal.SIGKILL)
        emulator.wait(timeout=10)
        wait_until(lambda: not (processes_in(workdir) & children), 10, "no orphan left")

        emulator = start_emulator(port, workdir)
        output, _ = tune.communicate(timeout=240)
    finally:
        tune.kill()
        emulator.send_signal(signal.SIGINT)
        emulator.wait(timeout=60)

    assert tune.returncode == 0, output
    assert "404" not in output and "--project" not in output
    job = json.loads((isolated / "studies" / "survives" / "study.json").read_text())["job"]
    client = MlflowClient(store)
    runs = [
        r for r in mlflow_study_runs(client, "survives") if r.data.tags["dualtune.role"] == "trial"
    ]
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:  # every epoch once, trial 1's from before and after the restart
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_rmse")]
        assert sorted(steps) == [1, 2, 3, 4]

    emulator = start_emulator(port, workdir)  # stopped cleanly, started again: the job is kept
    try:
        attach = subprocess.run(
            dualtune_argv("attach", job, "--emulator", url, "--tracking-uri", store),
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        resume = subprocess.run(
            dualtune_argv("tune", "--resume", "--backend", "vertex", "--study", "survives",
                          "--tracking-uri", store),
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(timeout=60)
    assert attach.returncode == 0, attach.stdout + attach.stderr
    assert resume.returncode == 0, resume.stdout + resume.stderr


@pytest.mark.parametrize("flag", ["--port", "--storage-port"])
def test_a_taken_port_is_one_line_and_exit_2(tmp_path, flag):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = {"--port": str(free_port()), "--storage-port": str(free_port())}
        ports[flag] = str(busy)
        argv = ["emulator", "--workdir", str(tmp_path / "w")]
        argv += [arg for pair in ports.items() for arg in pair]
        done = subprocess.run(dualtune_argv(*argv), capture_output=True, text=True, timeout=120)

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert flag in lines[0] and str(busy) in lines[0] and "in use" in lines[0]


@pytest.mark.e2e
def test_a_clean_stop_keeps_a_running_job_for_the_next_start(tmp_path, trainer_script):
    """Ctrl-C (stop()) with a workdir it was given: the job is not cancelled, its trial's
    process stops, and the next start on the workdir finishes the job."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    from vertex_emulator import start

    workdir, gate = tmp_path / "kept", tmp_path / "gate"
    pool = {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "container_spec": {
            "image_uri": "example.com/not-pulled:latest",
            "command": [sys.executable, str(trainer_script), f"--gate={gate}", "--epochs=2"],
        },
    }
    port = free_port()  # the same for both starts, as a restart would be
    options = {"port": port, "grace_s": 1.0, "poll_s": 0.05, "bayesian": "keras_tuner"}
    with start(workdir=workdir, **options) as first:
        aiplatform.init(**first.init_kwargs())
        trial_job = aiplatform.CustomJob(
            display_name="kept", worker_pool_specs=[pool], base_output_dir=f"{first.bucket}/kept"
        )
        job = aiplatform.HyperparameterTuningJob(
            display_name="kept",
            custom_job=trial_job,
            metric_spec={"loss": "minimize"},
            parameter_spec={"units": hpt.IntegerParameterSpec(min=4, max=5, scale="linear")},
            max_trial_count=2,
            parallel_trial_count=1,
            search_algorithm="grid",
        )
        parent = f"projects/{first.project}/locations/{first.location}"
        name = job.api_client.create_hyperparameter_tuning_job(
            parent=parent, hyperparameter_tuning_job=job._gca_resource
        ).name
        seen = first.gs_to_local(f"{first.bucket}/kept/1/model/seen.json")
        wait_until(lambda: seen.exists() and seen.read_text().endswith("}"), 60, "trial 1 runs")
        pid = json.loads(seen.read_text())["pid"]

    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    gate.write_text("open")
    with start(workdir=workdir, **options):

        def ended():
            got = aiplatform.HyperparameterTuningJob.get(name)._gca_resource  # read once
            return got if got.state in (4, 5, 7) else None

        done = wait_until(ended, 90, "the job ends after the restart")
    assert done.state == 4  # JOB_STATE_SUCCEEDED
    assert [t.state for t in done.trials] == [4, 4]  # both trials SUCCEEDED
    assert [m.step_count for m in done.trials[0].measurements] == [1, 2]
