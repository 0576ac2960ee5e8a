"""Helpers for the trainer tests: running `python -m trainer.task` as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TINY_BUDGET = ("--num_examples=2000", "--num_eval_examples=1000")


def data_flags(paths: dict[str, Path]) -> list[str]:
    return [f"--{split}_data={path}" for split, path in paths.items()]


def trainer_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AIP_* / hypertune settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "CLOUD_ML_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def trainer_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainer.task", *args]


def run_trainer(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run `python -m trainer.task ARGS` to completion and return the CompletedProcess."""
    return subprocess.run(
        trainer_argv(*args),
        env=env or trainer_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def hypertune_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
