"""CustomJobs, TrainingPipelines and the REST surface, through the real aiplatform SDK."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from vertex_emulator import start

pytestmark = pytest.mark.e2e

IMAGE = "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest"
QUERY = "?$alt=json;enum-encoding=int"


def _seen(emulator, job) -> dict:
    base = job.job_spec.base_output_directory.output_uri_prefix
    return json.loads((emulator.gs_to_local(base + "/model") / "seen.json").read_text())


def _collection(emulator, collection: str) -> str:
    return (
        f"{emulator.url}/v1/projects/{emulator.project}/locations/{emulator.location}/{collection}"
    )


def test_custom_job_runs_the_package_with_local_output_dirs(aiplatform, emulator, make_custom_job):
    job = make_custom_job("cj-ok", ["--lr=0.5", "--epochs=1"])
    job.run()

    assert job.state == aiplatform.gapic.JobState.JOB_STATE_SUCCEEDED
    seen = _seen(emulator, job)
    assert seen["argv"] == ["--lr=0.5", "--epochs=1"]
    base = job.job_spec.base_output_directory.output_uri_prefix
    assert seen["env"]["AIP_MODEL_DIR"] == str(emulator.gs_to_local(base + "/model")) + os.sep
    assert seen["env"]["AIP_CHECKPOINT_DIR"].endswith(f"checkpoints{os.sep}")
    assert "CLOUD_ML_TRIAL_ID" not in seen["env"]
    # Outputs are copied up to the storage emulator when the job ends.
    from google.cloud import storage

    bucket, prefix = base[len("gs://") :].split("/", 1)
    client = storage.Client(credentials=emulator.credentials())
    names = [b.name for b in client.list_blobs(bucket, prefix=prefix)]
    assert f"{prefix}/model/seen.json" in names


def test_custom_job_failure_carries_stderr_tail(aiplatform, make_custom_job):
    job = make_custom_job("cj-fail", ["--fail-when=always"])

    with pytest.raises(RuntimeError, match="boom: failing on purpose"):
        job.run()

    assert job.state == aiplatform.gapic.JobState.JOB_STATE_FAILED
    assert job._gca_resource.error.code == 13


def test_non_prebuilt_image_runs_the_sdks_sh_c_command_without_pip(
    aiplatform, emulator, trainer_script
):
    job = aiplatform.CustomJob.from_local_script(
        display_name="sh-c",
        script_path=str(trainer_script),
        container_uri="python:3.11-slim",
        args=["--epochs=1", "--units=7"],
        credentials=emulator.credentials(),  # its upload does not use aiplatform.init's
    )
    assert job.job_spec.worker_pool_specs[0].container_spec.command[:2] == ["sh", "-c"]

    job.run()

    assert job.state == aiplatform.gapic.JobState.JOB_STATE_SUCCEEDED
    assert _seen(emulator, job)["argv"] == ["--epochs=1", "--units=7"]


def test_custom_training_job_runs_as_a_pipeline_with_a_backing_custom_job(
    aiplatform, trainer_script
):
    job = aiplatform.CustomTrainingJob(
        display_name="pipeline-ok", script_path=str(trainer_script), container_uri=IMAGE
    )

    model = job.run(args=["--epochs=1"], replica_count=1)

    assert model is None
    assert job.state == aiplatform.gapic.PipelineState.PIPELINE_STATE_SUCCEEDED
    backing = job._gca_resource.training_task_metadata["backingCustomJob"]
    custom = aiplatform.CustomJob.get(backing)
    assert custom.state == aiplatform.gapic.JobState.JOB_STATE_SUCCEEDED


def test_unknown_job_is_not_found(aiplatform, emulator):
    from google.api_core.exceptions import NotFound

    name = f"projects/{emulator.project}/locations/{emulator.location}/hyperparameterTuningJobs/42"
    with pytest.raises(NotFound, match="42 not found"):
        aiplatform.HyperparameterTuningJob.get(name)

    answer = requests.get(
        f"{emulator.url}/v1/{name}{QUERY}", headers=emulator.headers(), timeout=10
    )
    assert answer.status_code == 404
    assert answer.json() == {
        "error": {"code": 404, "message": f"{name} not found.", "status": "NOT_FOUND"}
    }


def test_list_filters_by_display_name(aiplatform, make_custom_job):
    job = make_custom_job("listed-once", ["--epochs=1"])
    job.run()

    found = aiplatform.CustomJob.list(filter='display_name="listed-once"')
    assert [j.resource_name for j in found] == [job.resource_name]
    assert aiplatform.CustomJob.list(filter='display_name="no-such-job"') == []
    assert job.resource_name in [j.resource_name for j in aiplatform.CustomJob.list()]


def test_malformed_body_is_refused_with_400(emulator):
    body = {
        "displayName": "typo",
        "jobSpec": {"workerPoolSpecs": [{"replicaCount": "1", "containerSpec": {"imageUri": "x"}}]},
        "bogusField": 1,
    }
    answer = requests.post(
        _collection(emulator, "customJobs") + QUERY,
        json=body,
        headers=emulator.headers(),
        timeout=10,
    )

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert "bogusField" in error["message"]


def test_answers_use_valid_enums_and_proto3_json(emulator, make_custom_job):
    job = make_custom_job("shapes", ["--epochs=1"])
    job.run()

    url = f"{emulator.url}/v1/{job.resource_name}"
    as_names = requests.get(url, headers=emulator.headers(), timeout=10).json()
    as_ints = requests.get(url + QUERY, headers=emulator.headers(), timeout=10).json()
    assert as_names["state"] == "JOB_STATE_SUCCEEDED"
    assert as_ints["state"] == 4
    assert as_names["jobSpec"]["workerPoolSpecs"][0]["replicaCount"] == "1"
    assert as_names["createTime"].endswith("Z") and as_names["endTime"].endswith("Z")


def test_injected_503_then_success(aiplatform, emulator, make_custom_job):
    from google.api_core.exceptions import ServiceUnavailable

    emulator.inject_faults(status=503, count=1, pattern=r"/customJobs$", method="POST")
    with pytest.raises(ServiceUnavailable, match="Injected fault"):
        make_custom_job("after-503", ["--epochs=1"]).run()

    job = make_custom_job("after-503", ["--epochs=1"])
    job.run()
    assert job.state == aiplatform.gapic.JobState.JOB_STATE_SUCCEEDED


def test_injected_429_on_reads_counts_down(emulator):
    url = _collection(emulator, "customJobs")
    emulator.inject_faults(status=429, count=2, pattern="customJobs", method="GET")

    codes = [
        requests.get(url, headers=emulator.headers(), timeout=10).status_code for _ in range(3)
    ]

    assert codes == [429, 429, 200]


def test_cancel_terminates_the_process(aiplatform, emulator, make_custom_job, wait_for, tmp_path):
    job = make_custom_job("cj-cancel", [f"--gate={tmp_path / 'never'}"])
    job.submit()
    seen_file = emulator.gs_to_local(
        job.job_spec.base_output_directory.output_uri_prefix + "/model/seen.json"
    )
    wait_for(lambda: seen_file.exists() and seen_file.read_text().endswith("}"))
    pid = json.loads(seen_file.read_text())["pid"]

    job.cancel()
    with pytest.raises(RuntimeError, match="CANCELED"):
        job.wait_for_completion()

    assert job.state == aiplatform.gapic.JobState.JOB_STATE_CANCELLED
    assert not _alive(pid)


def test_container_spec_runs_its_command_and_stop_leaves_no_process(
    tmp_path, aiplatform, trainer_script, wait_for
):
    """An emulator of its own, so stop() can be checked; a containerSpec needs no package."""
    with start(workdir=tmp_path / "own", grace_s=1.0, poll_s=0.05) as own:
        aiplatform.init(**own.init_kwargs())
        pool = {
            "machine_spec": {"machine_type": "n1-standard-4"},
            "replica_count": 1,
            "container_spec": {
                "image_uri": "example.com/not-pulled:latest",
                "command": [sys.executable, str(trainer_script)],
                "args": [f"--gate={tmp_path / 'never'}"],
            },
        }
        job = aiplatform.CustomJob(
            display_name="hangs", worker_pool_specs=[pool], base_output_dir=f"{own.bucket}/hang"
        )
        job.submit()
        seen_file = own.gs_to_local(f"{own.bucket}/hang/model/seen.json")
        wait_for(lambda: seen_file.exists() and seen_file.read_text().endswith("}"))
        pid = json.loads(seen_file.read_text())["pid"]
        assert aiplatform.CustomJob.get(job.resource_name).state == 3  # JOB_STATE_RUNNING
        storage_process = own._storage.process

    assert not _alive(pid)
    assert storage_process.poll() is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_info_endpoint_tells_a_client_the_rest(emulator):
    info = requests.get(f"{emulator.url}/dualtune-emulator/info", timeout=10).json()

    assert info == {
        "url": emulator.url,
        "storageUrl": emulator.storage_url,
        "project": emulator.project,
        "location": emulator.location,
        "bucket": emulator.bucket,
        "workdir": str(emulator.workdir),
        "tokenFile": str(emulator.token_file),
        # The fixture pins Keras Tuner's GP (test_emulator_vizier.py checks Vizier's).
        "bayesianDesigner": emulator.bayesian_designer,
    }
    assert info["bayesianDesigner"].startswith("Keras Tuner's Gaussian process")


def test_cli_prints_settings_applies_env_faults_and_stops_on_ctrl_c(tmp_path):
    code = (
        "import sys; from pathlib import Path; from vertex_emulator import run_cli; "
        "sys.exit(run_cli(0, Path(sys.argv[1])))"
    )
    env = {**os.environ, "DUALTUNE_EMULATOR_FAULTS": "503:1:GET:customJobs"}
    cli = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "cli")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    printed = ""
    for line in cli.stdout:  # ends at EOF if the CLI dies
        printed += line
        if "Ctrl-C to stop" in line:
            break
    url = re.search(r"listening on (\S+)", printed).group(1)
    assert "export STORAGE_EMULATOR_HOST=http://127.0.0.1:" in printed

    info = requests.get(f"{url}/dualtune-emulator/info", timeout=10).json()
    jobs = f"{url}/v1/projects/{info['project']}/locations/{info['location']}/customJobs"
    auth = {"Authorization": f"Bearer {Path(info['tokenFile']).read_text().strip()}"}
    codes = [requests.get(jobs, headers=auth, timeout=10).status_code for _ in range(2)]
    assert codes == [503, 200]

    cli.send_signal(signal.SIGINT)
    assert cli.wait(timeout=30) == 0
