"""The trainer check asks the real trainer's --help: a seed flag it does not list is refused in
one line (the field, the flag, the fix) before anything is created."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from backends.trainer_check import (
    check_parameters,
    check_seed_flag,
    check_shipped_trainer,
    trainer_flags,
)
from search_spaces.loader import load_space_text
from tests.conftest import FIXTURES, TOY_TRAINER, dualtune_argv
from trialkit.errors import UserError

SPACE = """
metric: {{tag: val_rmse, goal: minimize}}
parameters:
  x: {{type: double, min: 0.0, max: 1.0}}
trainer:
  script: {script}
  seed_flag: {flag}
budget: {{max_trials: 1, parallel_trials: 1}}
algorithm: random
"""


def space(flag: str):
    text = SPACE.format(script=TOY_TRAINER, flag=flag)
    return load_space_text(text, source="toy_seed.yaml", base_dir=FIXTURES)


@pytest.fixture(scope="module")
def toy_flags() -> set[str]:
    return trainer_flags([sys.executable, str(TOY_TRAINER)], dict(os.environ))


def test_the_toy_trainer_lists_its_seed_flag(toy_flags):
    assert {"seed", "seed_noise", "x"} <= toy_flags
    check_parameters(space("--seed"), toy_flags, "toy_trainer.py")  # accepted: no error


def test_a_seed_flag_the_trainer_lacks_is_one_line_naming_field_flag_and_fix(toy_flags):
    with pytest.raises(UserError, match="trainer.seed_flag: the trainer toy_trainer.py") as e:
        check_parameters(space("--random_seed"), toy_flags, "toy_trainer.py")
    message = str(e.value)
    assert message.startswith("toy_seed.yaml: trainer.seed_flag:") and "\n" not in message
    assert "no flag --random_seed" in message and "--help lists: " in message
    assert message.endswith("give its training-seed flag, or remove seed_flag (repeats become "
                            "plain re-runs)")  # fmt: skip


def test_no_seed_flag_needs_no_such_flag():
    no_flag = load_space_text(
        "metric: {tag: val_rmse, goal: minimize}\n"
        "parameters:\n  x: {type: double, min: 0, max: 1}\n"
    )
    check_seed_flag(no_flag, set(), "t")  # nothing to check: no error
    with pytest.raises(UserError, match="no flag --seed"):
        check_seed_flag(space("--seed"), {"x"}, "t")


# Vertex at an address nothing answers: the check must refuse before any request is made.
VERTEX = ["--backend", "vertex", "--project", "p", "--region", "us-central1",
          "--staging-bucket", "gs://b"]  # fmt: skip


@pytest.mark.parametrize("backend", [["--backend", "local"], VERTEX], ids=["local", "vertex"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SPACE.format(script=TOY_TRAINER, flag="--sead"), "trainer.seed_flag: the trainer"),
        (
            SPACE.format(script=TOY_TRAINER, flag="--seed").replace("  x: {", "  y: {"),
            "parameters.y: the trainer",
        ),
    ],
    ids=["seed_flag", "parameter"],
)
def test_through_the_cli_exit_2_and_nothing_created(isolated, backend, text, expected):
    path = isolated / "toy_seed.yaml"
    path.write_text(text)
    before = sorted(p.name for p in isolated.iterdir())
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        dualtune_argv("tune", *backend, "--space", str(path), "--study", "s1"),
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in lines[0], done.stderr[-2000:]
    assert expected in lines[0] and "--help lists: " in lines[0], lines[0]
    made = {p.relative_to(isolated).as_posix() for p in isolated.rglob("*")} - set(before)
    assert made <= {"mlruns"}, made  # no study, no record (the CLI leaves an empty store folder)
    assert not any((isolated / "mlruns").rglob("*"))


def test_a_shipped_trainer_that_cannot_answer_here_is_not_refused(tmp_path, caplog):
    """A Vertex trainer may import what only its container has: its flags go unchecked, with a
    warning that says so, and the study is not refused for that."""
    script = tmp_path / "container_only.py"
    script.write_text("import a_package_only_the_container_has  # noqa\n")
    text = SPACE.format(script=script, flag="--seed")
    shipped = load_space_text(text, source="toy_seed.yaml", base_dir=tmp_path)
    with caplog.at_level("WARNING", logger="backends.trainer_check"):
        check_shipped_trainer(shipped, {})
    (warning,) = caplog.messages
    assert warning.startswith("the trainer's flags are not checked before submitting: ")
    assert "No module named 'a_package_only_the_container_has'" in warning
    with pytest.raises(UserError, match="no flag --sed "):  # one that answers is checked
        check_shipped_trainer(space("--sed"), {})


def test_args_the_trainer_lacks_are_refused_by_name_prefixes_accepted(toy_flags):
    shipped = space("--seed")
    check_parameters(shipped, toy_flags, "toy_trainer.py", ("--num_epoch=1", "--units", "8"))
    with pytest.raises(UserError) as e:
        check_parameters(shipped, toy_flags, "toy_trainer.py", ("--num_epochs=1", "--bogus=s3cr3t"))
    message = str(e.value)
    assert message.startswith("-- extra trainer args: --bogus: the trainer toy_trainer.py has no")
    assert "s3cr3t" not in message and "\n" not in message  # a value may be a secret
    tuning = load_space_text(
        SPACE.format(script=TOY_TRAINER, flag="--seed").replace(
            "  seed_flag:", "  tuning_args: [--epochs=2]\n  seed_flag:"
        ),
        source="toy_seed.yaml",
        base_dir=FIXTURES,
    )
    with pytest.raises(UserError, match=r"^toy_seed.yaml: trainer.tuning_args: --epochs: "):
        check_parameters(tuning, toy_flags, "toy_trainer.py")


@pytest.mark.parametrize("backend", [["--backend", "local"], VERTEX], ids=["local", "vertex"])
def test_a_misspelt_extra_arg_is_one_line_before_any_trial(isolated, backend):
    path = isolated / "toy_seed.yaml"
    path.write_text(SPACE.format(script=TOY_TRAINER, flag="--seed"))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        dualtune_argv("tune", *backend, "--space", str(path), "--study", "s1", "--", "--bogus"),
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert "-- extra trainer args: --bogus: the trainer" in lines[0]
    assert not (isolated / "studies" / "s1").exists()
