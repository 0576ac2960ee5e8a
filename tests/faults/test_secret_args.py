"""A secret in `-- extra args` (`--db_password=...`): no process the study starts shows it on
its command line (/proc/PID/cmdline, what `ps` shows every local user), and neither study.json
nor MLflow keeps it; the trainer still gets it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from dualtune.secret_args import MASK, recorded_args, redact
from tests.conftest import dualtune_argv, mlflow_study_runs
from trialkit.errors import UserError

SECRET = "hunter2-sEcReT-9931"

TRAINER = """
import argparse, json, os, time
import hypertune
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--db_password", required=True)
args = p.parse_args()
for epoch in (1, 2, 3):
    time.sleep(0.4)
    hypertune.HyperTune().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag="loss", metric_value=args.x / epoch, global_step=epoch)
with open(os.path.join(os.path.dirname(os.environ["AIP_MODEL_DIR"]), "got.json"), "w") as fh:
    json.dump({"password_ok": args.db_password == __SECRET__}, fh)
""".replace("__SECRET__", repr(SECRET))


def space(trainer: str) -> str:
    return (
        "name: secretive\n"
        "metric: {tag: loss, goal: minimize}\n"
        "parameters:\n"
        "  x: {type: double, min: 0.1, max: 1.0}\n"
        f"trainer: {{{trainer}}}\n"
        "budget: {max_trials: 2, parallel_trials: 2, max_failed_trials: 0}\n"
        "algorithm: random\n"
    )


def cmdlines() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
    return {pid: text.decode(errors="replace") for pid, text in found.items()}


def run_watched(study: str, *flags: str) -> tuple[subprocess.CompletedProcess, list, int]:
    """Run `dualtune tune` and read every process's command line every 50 ms meanwhile."""
    argv = dualtune_argv(
        "tune", "--space", "space.yaml", "--study", study, *flags, "--",
        f"--db_password={SECRET}",
    )  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    user_line = " ".join(argv) + " "  # /proc/PID/cmdline: NUL-separated, read as spaces
    leaks, launchers = [], 0
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        for pid, line in cmdlines().items():
            if pid == proc.pid or line == user_line:
                # The user's own command, or a child of it in the instant between fork and
                # exec (it still shows its parent's command line): the secret is where the
                # user put it, readable there anyway.
                continue
            if SECRET in line:
                leaks.append((pid, line))
            launchers += "launcher.py" in line
        time.sleep(0.05)
    out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), leaks, launchers


@pytest.mark.slow
@pytest.mark.parametrize(
    "trainer, flags",
    [("module: secret_trainer", ()), ("script: secret_trainer.py", ("--no-prewarm",))],
    ids=["module-trainer-with-trial-server", "script-trainer-started-cold"],
)
def test_secret_extra_arg_is_on_no_command_line_and_in_no_record(trainer, flags, isolated):
    (isolated / "secret_trainer.py").write_text(TRAINER)
    (isolated / "space.yaml").write_text(space(trainer))
    done, leaks, launchers = run_watched("s", *flags)
    assert done.returncode == 0, done.stderr
    assert leaks == []
    assert launchers > 0  # the watch did see the study's processes
    got = [json.loads(p.read_text()) for p in (isolated / "studies/s/trials").glob("*/got.json")]
    assert got == [{"password_ok": True}] * 2  # the trainer had the real value
    record = (isolated / "studies" / "s" / "study.json").read_text()
    assert SECRET not in record
    assert json.loads(record)["extra_args"] == [f"--db_password={MASK}"]
    assert SECRET not in done.stdout + done.stderr
    client = MlflowClient(f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}")
    for run in mlflow_study_runs(client, "s"):
        kept = json.dumps([run.data.params, run.data.tags])
        assert SECRET not in kept


def test_secret_values_are_masked_and_asked_for_again():
    args = ["--db_password=pw", "--api_key", "k", "--token=t", "--monkey=1", "--x", "2"]
    assert redact(args) == [
        f"--db_password={MASK}", "--api_key", MASK, f"--token={MASK}", "--monkey=1", "--x", "2",
    ]  # fmt: skip
    assert recorded_args(["--monkey=1"], None, "s", "finalize") == ("--monkey=1",)
    assert recorded_args(redact(args), ["--db_password=new"], "s", "x") == ("--db_password=new",)
    with pytest.raises(UserError, match=r"give them again: dualtune tune --resume --study s -- "):
        recorded_args(redact(args), None, "s", "tune --resume")


# -- the vertex backend: extra args are a job's container args, so a secret there is refused ----
PLACE = ["--backend", "vertex", "--project", "p", "--region", "us-central1", "--staging-bucket",
         "gs://b"]  # fmt: skip


def _recorded_vertex_study(directory: Path, name: str) -> str:
    from dualtune.study_record import create
    from tests.conftest import FIXTURES

    meta = {
        "backend": "vertex", "algorithm": "random", "space_source": str(FIXTURES / "toy.yaml"),
        "budget": {"max_trials": 3, "parallel_trials": 2, "max_failed_trials": 1},
        "trainer": {"script": "toy_trainer.py"}, "extra_args": ["--db_password=***"],
    }  # fmt: skip
    create(directory / "studies", name, FIXTURES / "toy.yaml", meta)
    return (directory / "studies" / name / "study.json").read_text()


@pytest.mark.parametrize(
    "command",
    [
        ["tune", "--study", "new"],
        ["pipeline", "--study", "new"],
        ["pipeline", "--study", "new", "--deploy"],
        ["tune", "--resume", "--study", "old"],
        ["finalize", "--study", "old"],
    ],
    ids=["tune", "pipeline", "pipeline-deploy", "resume", "finalize"],
)
def test_a_secret_extra_arg_on_the_vertex_backend_is_refused_in_one_line(command, isolated, capsys):
    """Not sent: a Vertex job's container args are in its spec (and on the emulator's trial
    command lines, which `ps` shows); the fix is the container's env (--env)."""
    from dualtune.cli import main
    from tests.conftest import FIXTURES

    before = _recorded_vertex_study(isolated, "old")
    space = ["--space", str(FIXTURES / "toy.yaml")] if "new" in command else []
    argv = [*command, *space, *PLACE, "--", "--x=1", f"--db_password={SECRET}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "-- --db_password: on the vertex backend extra args become the job's container" in err
    assert "--env DB_PASSWORD=VALUE" in err and SECRET not in err
    assert sorted(p.name for p in (isolated / "studies").iterdir()) == ["old"]  # nothing new
    assert (isolated / "studies" / "old" / "study.json").read_text() == before
    assert not (isolated / "mlruns").exists()


def test_extra_args_that_look_secret_only_by_value_or_position_pass_on_vertex():
    from backends.registry import entry
    from dualtune.secret_args import check_job_args

    check_job_args(entry("vertex"), ["--monkey=1", "--units", "token", "--x=password"])
    check_job_args(entry("local"), ["--db_password=p"])  # local: it goes on stdin, not argv
    with pytest.raises(UserError, match=r"^-- --api-key: on the vertex backend .* --env API_KEY="):
        check_job_args(entry("vertex"), ["--units=2", "--api-key", "k"])
