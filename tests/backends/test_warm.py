"""Warm trial processes (launcher.py): the trainer's warm_up hook, and that a warm trial computes
exactly what a cold one does."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from backends.hypertune_file import read_reports
from backends.local.process import (
    TrialProcess,
    WarmProcess,
    base_env,
    preload_modules,
    python_argv,
    trial_command,
)

WARM_STATE = """
SEEN = []
"""

WARM_TRAINER = """
import json
import sys

import warmstate


def warm_up(argv):
    if "--break-warm-up" in argv:
        raise RuntimeError("a broken warm_up")
    warmstate.SEEN.append(list(argv))


if __name__ == "__main__":
    with open("result.json", "w") as handle:
        json.dump({"warm_up": warmstate.SEEN, "argv": sys.argv[1:]}, handle)
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
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


@pytest.mark.parametrize("broken", [False, True])
def test_warm_up_gets_the_fixed_args_and_a_broken_one_does_not_stop_the_trial(tmp_path, broken):
    env = _toy_module(tmp_path)
    fixed = ("--data=a b.csv", "--break-warm-up") if broken else ("--data=a b.csv",)
    warm = WarmProcess(sys.executable, ("warmtrainer",), env, "warmtrainer", fixed)
    command = trial_command(
        [sys.executable, "-m", "warmtrainer", *fixed, "--units=3"], tmp_path / "trial", "0"
    )
    trial = TrialProcess.start(command, "m", env, warm)
    assert trial.proc is warm.proc  # handed to the warm process, not started cold
    assert _wait(trial) == 0, (command.directory / "stderr.log").read_text()[-2000:]
    result = json.loads((command.directory / "result.json").read_text())
    assert result["argv"] == [*fixed, "--units=3"]
    assert result["warm_up"] == ([] if broken else [list(fixed)])


@pytest.mark.slow
def test_a_warm_flights_trial_reads_its_data_in_memory_and_matches_a_cold_one(
    flights_data, tmp_path
):
    """The real trainer: trainer.task.warm_up reads the data ahead; results are identical."""
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
    warm = WarmProcess(
        sys.executable, preload_modules("trainer.task", None), env, "trainer.task", tuple(fixed)
    )
    curves, logs = {}, {}
    for name, process in (("cold", None), ("warm", warm)):
        command = trial_command(argv, tmp_path / name, "0")
        trial = TrialProcess.start(command, "val_rmse", env, process)
        code = _wait(trial, timeout_s=300)
        logs[name] = (command.directory / "stdout.log").read_text()
        assert code == 0, (command.directory / "stderr.log").read_text()[-3000:]
        curves[name] = [(r.step, r.value) for r in read_reports(command.metric_file, "val_rmse")]
    assert [step for step, _ in curves["cold"]] == [1, 2]
    assert curves["warm"] == curves["cold"]  # the warm-up changes nothing the trial computes
    assert "rows from" in logs["cold"] and "(in memory)" not in logs["cold"]
    assert logs["warm"].count("(in memory)") == 2  # train and eval, read during the warm-up
