"""The trial server (launcher.py): trials forked from one process that did the imports, the
trainer's warm_up hook, and that a served trial computes exactly what a cold one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends.local.process import (
    ServedProcess,
    TrialProcess,
    TrialServer,
    preload_modules,
    trial_command,
)
from backends.trainer_check import base_env, python_argv
from trialkit.hypertune_file import read_reports

WARM_STATE = """
SEEN = []
"""

# A module of the trainer's own named like one of dualtune's (backends/local/process.py): the
# trial must get this one.
OWN_PROCESS = """
OWNER = "the trainer"
"""

WARM_TRAINER = """
import json
import os
import sys

import numpy
import process
import warmstate


def warm_up(argv):
    if "--break-warm-up" in argv:
        raise RuntimeError("a broken warm_up")
    warmstate.SEEN.append(list(argv))


if __name__ == "__main__":
    if "--sleep" in sys.argv:
        import time

        time.sleep(60)
    with open("result.json", "w") as handle:
        json.dump({"warm_up": warmstate.SEEN, "argv": sys.argv[1:], "pid": os.getpid(),
                   "pgid": os.getpgid(0), "cwd": os.getcwd(), "env": os.environ.get("TRIAL"),
                   "process": process.OWNER, "numpy": int(numpy.random.randint(1 << 30))},
                  handle)
    print("done", flush=True)
"""


def _wait(trial: TrialProcess, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while trial.exit_code() is None:
        assert time.monotonic() < deadline, "the trial did not end in time"
        time.sleep(0.05)
    return trial.exit_code()


def _toy_module(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "warmstate.py").write_text(WARM_STATE)
    (tmp_path / "warmtrainer.py").write_text(WARM_TRAINER)
    (tmp_path / "process.py").write_text(OWN_PROCESS)
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


@pytest.mark.parametrize("broken", [False, True])
def test_warm_up_gets_the_fixed_args_and_a_broken_one_does_not_stop_the_trial(tmp_path, broken):
    env = _toy_module(tmp_path)
    fixed = ("--data=a b.csv", "--break-warm-up") if broken else ("--data=a b.csv",)
    server = TrialServer(sys.executable, ("warmtrainer",), env, "warmtrainer", fixed)
    try:
        command = trial_command(
            [sys.executable, "-m", "warmtrainer", *fixed, "--units=3"], tmp_path / "trial", "0"
        )
        trial = TrialProcess.start(command, "m", env, server)
        assert isinstance(trial.proc, ServedProcess)  # forked by the server, not spawned cold
        assert _wait(trial) == 0, (command.directory / "stderr.log").read_text()[-2000:]
    finally:
        server.close()
    result = json.loads((command.directory / "result.json").read_text())
    assert result["argv"] == [*fixed, "--units=3"]
    assert result["warm_up"] == ([] if broken else [list(fixed)])


def test_each_served_trial_is_its_own_process_with_its_own_session_cwd_and_env(tmp_path):
    env = _toy_module(tmp_path)
    server = TrialServer(sys.executable, ("warmtrainer",), env)
    try:
        trials = []
        for number in range(3):  # at once, as parallel slots would
            command = trial_command(
                [sys.executable, "-m", "warmtrainer", f"--n={number}"],
                tmp_path / str(number),
                str(number),
            )
            trial_env = {**env, "TRIAL": str(number)}
            trials.append((command, TrialProcess.start(command, "m", trial_env, server)))
        for command, trial in trials:
            assert _wait(trial) == 0, (command.directory / "stderr.log").read_text()[-2000:]
            assert (command.directory / "stdout.log").read_text() == "done\n"
    finally:
        server.close()
    results = [json.loads((c.directory / "result.json").read_text()) for c, _ in trials]
    pids = {r["pid"] for r in results}
    assert len(pids) == 3 and server.proc.pid not in pids
    assert all(r["pgid"] == r["pid"] for r in results)  # its own session: killpg reaches it
    assert [r["env"] for r in results] == ["0", "1", "2"]
    assert {r["process"] for r in results} == {"the trainer"}  # not dualtune's process.py
    assert len({r["numpy"] for r in results}) == 3  # numpy reseeded, as in fresh interpreters
    assert [Path(r["cwd"]) for r in results] == [c.directory for c, _ in trials]


def test_a_trial_dies_with_its_server_and_says_so(tmp_path):
    env = _toy_module(tmp_path)
    server = TrialServer(sys.executable, ("warmtrainer",), env)
    try:
        command = trial_command(
            [sys.executable, "-m", "warmtrainer", "--sleep"], tmp_path / "t", "0"
        )
        trial = TrialProcess.start(command, "m", env, server)
        assert trial.exit_code() is None
        os.killpg(server.proc.pid, signal.SIGKILL)  # as the out-of-memory killer would
        assert _wait(trial, timeout_s=30) == -9
        assert "trial server died" in trial.failure_reason()
        deadline = time.monotonic() + 30
        while _exists(trial.pid):  # its trials must not outlive it
            assert time.monotonic() < deadline, "the trial outlived its server"
            time.sleep(0.05)
    finally:
        server.close()


FAKE_SERVER = """
import json, sys
say = lambda event: print(json.dumps(event), flush=True)
say({"pid": 4242, "code": 0})  # an earlier trial with pid 4242 ended
for line in sys.stdin:
    say({"token": json.loads(line)["token"], "pid": 4242})  # the system gives 4242 again
"""


def test_a_pid_given_again_is_not_taken_for_the_earlier_trial_that_had_it(tmp_path, monkeypatch):
    """The client side of the protocol against a scripted server."""
    from backends.local import process as process_module

    (tmp_path / "fake_server.py").write_text(FAKE_SERVER)
    monkeypatch.setattr(process_module, "LAUNCHER", tmp_path / "fake_server.py")
    server = TrialServer(sys.executable, (), dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while server.exit_code(4242) is None:  # the earlier trial's end has arrived
            assert time.monotonic() < deadline
            time.sleep(0.01)
        command = trial_command([sys.executable, "-c", "pass"], tmp_path / "t", "0")
        served = server.start(command, {}, timeout_s=30)
        assert served is not None and served.pid == 4242
        assert served.poll() is None  # running: the old exit code was dropped
    finally:
        server.close()


def test_a_stuck_server_is_given_up_and_trials_start_cold(tmp_path):
    env = _toy_module(tmp_path)
    (tmp_path / "stuck.py").write_text("import time\ntime.sleep(120)\n")
    server = TrialServer(sys.executable, ("stuck", "warmtrainer"), env)  # never gets past it
    command = trial_command([sys.executable, "-m", "warmtrainer"], tmp_path / "t", "0")
    command.directory.mkdir(parents=True)
    started = time.monotonic()
    assert server.start(command, env, timeout_s=1.0) is None
    assert time.monotonic() - started < 30 and not server.alive()
    trial = TrialProcess.start(command, "m", env, server)
    assert isinstance(trial.proc, subprocess.Popen)  # a fresh interpreter instead
    assert _wait(trial) == 0


def _exists(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting for whoever adopted it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_a_served_flights_trial_reads_its_data_in_memory_and_matches_a_cold_one(
    flights_data, tmp_path
):
    """The real trainer, forked from a server that imported TensorFlow and read the data (its
    warm_up): the same results as a cold process, to the last bit."""
    fixed = [
        f"--train_data={flights_data['train']}",
        f"--eval_data={flights_data['eval']}",
        "--num_examples=1000",
        "--num_eval_examples=500",
        "--num_epochs=2",
        "--skip_full_eval",
    ]
    params = ["--nbuckets=6", "--learning_rate=0.003"]
    env = base_env({"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}, "trainer.task")
    argv = [*python_argv(None, "trainer.task", None), *fixed, *params]
    server = TrialServer(
        sys.executable, preload_modules("trainer.task", None), env, "trainer.task", tuple(fixed)
    )
    curves, logs = {}, {}
    try:
        for name, process in (("cold", None), ("warm", server)):
            command = trial_command(argv, tmp_path / name, "0")
            trial = TrialProcess.start(command, "val_rmse", env, process)
            code = _wait(trial, timeout_s=300)
            logs[name] = (command.directory / "stdout.log").read_text()
            assert code == 0, (command.directory / "stderr.log").read_text()[-3000:]
            reports = read_reports(command.metric_file, "val_rmse")
            curves[name] = [(r.step, r.value) for r in reports]
    finally:
        server.close()
    assert [step for step, _ in curves["cold"]] == [1, 2]
    assert curves["warm"] == curves["cold"]  # the warm-up changes nothing the trial computes
    assert "rows from" in logs["cold"] and "(in memory)" not in logs["cold"]
    assert logs["warm"].count("(in memory)") == 2  # train and eval, read during the warm-up
