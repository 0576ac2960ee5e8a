"""Security properties of `dualtune tune`, end to end through the real CLI and the toy trainer.

- Parameter values and trainer arguments travel as argv entries, never through a shell: shell
  syntax in them reaches the trainer as the same characters and runs nothing.
- Credentials in the environment (and --env values) stay out of everything dualtune writes:
  its terminal output (debug logging included), MLflow params, tags, metric names and artifacts,
  and the study's own files. A trial's stdout/stderr logs are the trainer's own business.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, TOY_TRAINER, dualtune_argv, mlflow_study_runs

pytestmark = pytest.mark.slow

SHELL_VALUES = [
    "64,16; rm -rf ~",
    "$(touch PWNED)",
    "`touch PWNED_TICK` && echo $HOME | tee PWNED_PIPE",
]
SHELL_ARG = "--flag=$(touch PWNED_ARG); `touch PWNED_ARG_TICK` > PWNED_REDIRECT"


def write_space(directory: Path, parameters: str, budget: str) -> Path:
    space = directory / "space.yaml"
    space.write_text(
        "metric: {tag: val_rmse, goal: minimize}\n"
        f"parameters:\n{parameters}"
        f"trainer:\n  script: {TOY_TRAINER}\n  tuning_args: ['--num_epochs=2']\n"
        f"budget: {budget}\n"
    )
    return space


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    full.pop("DUALTUNE_VERTEX_EMULATOR", None)
    return subprocess.run(
        dualtune_argv(*args), capture_output=True, text=True, timeout=300, env=full
    )


def test_shell_syntax_in_values_and_args_reaches_the_trainer_verbatim(isolated):
    values = ", ".join(json.dumps(v) for v in SHELL_VALUES)
    space = write_space(
        isolated,
        f"  act: {{type: categorical, values: [{values}]}}\n  x: {{type: fixed, value: 0.25}}\n",
        "{max_trials: 3, parallel_trials: 1, max_failed_trials: 0}\nalgorithm: grid",
    )
    done = run_cli("tune", "--space", str(space), "--study", "shell", "--", SHELL_ARG)
    assert done.returncode == 0, done.stderr[-3000:]

    models = sorted((isolated / "studies" / "shell" / "trials").glob("*/model/model.json"))
    argvs = [json.loads(m.read_text())["argv"] for m in models]
    assert len(argvs) == 3  # cold start and warm (pre-started) processes alike
    assert {a for argv in argvs for a in argv if a.startswith("--act=")} == {
        f"--act={v}" for v in SHELL_VALUES
    }
    for argv in argvs:
        assert SHELL_ARG in argv and "--x=0.25" in argv
    pwned = [*isolated.rglob("PWNED*"), *REPO.glob("PWNED*"), *Path.home().glob("PWNED*")]
    assert not pwned, pwned

    client = MlflowClient(f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}")
    runs = mlflow_study_runs(client, "shell")
    recorded = {r.data.params["act"] for r in runs if "act" in r.data.params}
    assert recorded == set(SHELL_VALUES)


def test_credentials_stay_out_of_output_mlflow_and_the_study_record(isolated):
    secrets = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(isolated / "fake-sa-key-5d1e.json"),
        "MLFLOW_TRACKING_TOKEN": "fake-token-123",
        "AWS_SECRET_ACCESS_KEY": "fake-secret-xyz",
    }
    key_secret = "fake-private-key-789"
    (isolated / "fake-sa-key-5d1e.json").write_text(json.dumps({"private_key": key_secret}))
    flag_secret = "fake-token-456"
    space = write_space(
        isolated,
        "  x: {type: double, min: 0.0, max: 1.0}\n  act: {type: categorical, values: [relu]}\n",
        "{max_trials: 2, parallel_trials: 2, max_failed_trials: 0}\nalgorithm: random",
    )
    done = run_cli(
        "tune", "--space", str(space), "--study", "creds", "--verbose",
        "--env", f"API_TOKEN={flag_secret}",
        env=secrets,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    needles = [*secrets.values(), key_secret, flag_secret]

    def leaks(text: str) -> list[str]:
        return [n for n in needles if n in text]

    assert "DEBUG" in done.stderr  # --verbose: the debug log is scanned too
    assert not leaks(done.stdout + done.stderr), "in the CLI's output"

    client = MlflowClient(f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}")
    runs = mlflow_study_runs(client, "creds")
    roles = sorted(r.data.tags["dualtune.role"] for r in runs)  # the baseline and the
    # confirmations (the two trials, twice each) get the same environment as the trials
    assert roles == ["baseline"] * 2 + ["confirmation"] * 4 + ["study"] + ["trial"] * 2
    artifacts = 0
    for run in runs:
        record = json.dumps(
            [run.info.run_name, run.data.params, run.data.tags, sorted(run.data.metrics)]
        )
        assert not leaks(record), f"in MLflow run {run.info.run_name}"
        for path in artifact_files(client, run.info.run_id):
            assert not leaks(path.read_text(errors="replace")), f"in artifact {path}"
            artifacts += 1
    assert artifacts  # the study run's search space, at least: the scan saw something
    # Everything the store holds, deleted rows included, and every artifact on disk.
    store = [isolated / "mlruns" / "mlflow.db", *(isolated / "mlruns").rglob("artifacts/**/*")]
    for path in store:
        if path.is_file():
            assert not leaks(path.read_bytes().decode("latin-1")), f"in {path}"

    study = isolated / "studies" / "creds"
    record = json.loads((study / "study.json").read_text())
    assert record["env_keys"] == ["API_TOKEN"]  # the name is kept, never the value
    for path in study.rglob("*"):
        if path.is_file() and path.name not in ("stdout.log", "stderr.log"):
            assert not leaks(path.read_text(errors="replace")), f"in {path}"


def artifact_files(client: MlflowClient, run_id: str) -> list[Path]:
    """Every artifact of a run, downloaded (the real artifact API, whatever the store)."""
    import tempfile

    target = Path(tempfile.mkdtemp(prefix="artifacts-"))
    if not client.list_artifacts(run_id):
        return []
    local = Path(client.download_artifacts(run_id, "", str(target)))
    return [p for p in local.rglob("*") if p.is_file()]
