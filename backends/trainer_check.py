"""Check the trainer before the first trial: it runs, and it accepts every parameter as a flag
(and the space's seed flag, which dualtune gives every repeated run). How a trainer is started
on this machine (its argv and environment) lives here too, shared by the local backend's trials
and the check both backends make.

Asking the trainer's own --help catches a misspelt parameter in seconds instead of after a
study's worth of failed trials.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from search_spaces.model import SearchSpace
from trialkit.errors import UserError

log = logging.getLogger(__name__)

MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_trainer(value: str) -> tuple[str | None, str | None]:
    """--trainer: a script path (ends in .py or exists) or a dotted module name."""
    if value.endswith(".py") or "/" in value or Path(value).is_file():
        path = Path(value).resolve()
        if not path.is_file():
            raise UserError(
                f"--trainer: script {value!r} does not exist; give an existing .py "
                f"file or a module name such as trainer.task"
            )
        return None, str(path)
    if not MODULE.match(value):
        raise UserError(
            f"--trainer: {value!r} is neither a script path nor a module name; give a .py "
            f"file or a dotted module name such as trainer.task"
        )
    return value, None


def check_python(value: str | None) -> None:
    if value is None:
        return
    path = Path(value)
    import os
    import shutil

    found = shutil.which(value) if not path.is_absolute() and "/" not in value else value
    if not found or not Path(found).is_file() or not os.access(found, os.X_OK):
        raise UserError(
            f"--python: {value!r} is not an executable interpreter; "
            f"give the path of a python that has the trainer's dependencies"
        )


def base_env(extra: dict[str, str], module: str | None) -> dict[str, str]:
    """The environment every trial process of a study starts from: ours, plus --env, plus the
    current directory on PYTHONPATH for a module trainer (`python -m` runs from the trial's own
    directory and must still find the module)."""
    env = {**os.environ, **extra}
    if module:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.getcwd(), env.get("PYTHONPATH", "")) if p
        )
    return env


def python_argv(python: str | None, module: str | None, script: str | None) -> list[str]:
    """The interpreter and entry point of a trial, as Vertex would run it."""
    interpreter = python or sys.executable
    if module:
        return [interpreter, "-m", module]
    return [interpreter, str(script)]


def flags_here(space: SearchSpace, env: dict[str, str], python: str | None = None) -> set[str]:
    """The flags the space's trainer lists in its --help, asked as a trial would start it
    here (`python`: the interpreter; None: this one). UserError when it cannot answer."""
    trainer = space.trainer
    argv = python_argv(python, trainer.module, trainer.script)
    return trainer_flags(argv, base_env(env, trainer.module))


def trainer_flags(argv: list[str], env: dict[str, str], timeout_s: float = 180) -> set[str]:
    """The --flags the trainer's --help lists. UserError when it cannot even answer --help."""
    try:
        done = subprocess.run(  # noqa: S603 - argv list
            [*argv, "--help"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(
            f"--trainer: `{' '.join(argv)} --help` could not run ({exc}); "
            f"check --trainer and --python"
        ) from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise UserError(
            f"--trainer: `{' '.join(argv)} --help` failed ({last}); check --trainer and --python"
        )
    return set(re.findall(r"(?<![\w-])--([A-Za-z0-9][\w-]*)", done.stdout))


def check_parameters(
    space: SearchSpace, flags: set[str], trainer: str, extra: tuple[str, ...] = ()
) -> None:
    """UserError unless the trainer's --help lists every parameter, the seed flag and every
    --flag of the space's tuning and finalize args and of the extra args."""
    check_seed_flag(space, flags, trainer)
    for where, args in (
        (f"{space.source}: trainer.tuning_args", space.trainer.tuning_args),
        (f"{space.source}: trainer.finalize_args", space.trainer.finalize_args),
        ("-- extra trainer args", extra),
    ):
        _check_args(args, flags, trainer, where)
    for name in space.names:
        if name not in flags:
            raise UserError(
                f"{space.source}: parameters.{name}: the trainer {trainer} has no flag "
                f"--{name} (its --help lists: {', '.join(sorted(flags)) or 'none'}); "
                f"rename the parameter to one of its flags"
            )


def _check_args(args: tuple[str, ...], flags: set[str], trainer: str, where: str) -> None:
    """Every --flag of `args` is one the trainer lists, or a unique prefix of one (argparse
    takes those). Only the flag's name is ever printed: its value may be a secret."""
    for arg in args:
        if not arg.startswith("--") or arg == "--":
            continue
        name = arg[2:].split("=", 1)[0]
        if name in flags or len([f for f in flags if f.startswith(name)]) == 1:
            continue
        raise UserError(
            f"{where}: --{name}: the trainer {trainer} has no such flag (its --help lists: "
            f"{', '.join(sorted(flags)) or 'none'}); fix its spelling or remove it"
        )


def check_seed_flag(space: SearchSpace, flags: set[str], trainer: str) -> None:
    """The space's trainer.seed_flag is one the trainer lists: otherwise every baseline,
    confirmation and execution run would fail on an unknown flag (or, worse, a trainer that
    ignores unknown flags would repeat one seed and report no noise at all)."""
    flag = space.trainer.seed_flag
    if flag is None or flag[2:] in flags:
        return
    raise UserError(
        f"{space.source}: trainer.seed_flag: the trainer {trainer} has no flag {flag} "
        f"(its --help lists: {', '.join(sorted(flags)) or 'none'}); "
        f"give its training-seed flag, or remove seed_flag (repeats become plain re-runs)"
    )


def check_shipped_trainer(
    space: SearchSpace, env: dict[str, str], extra: tuple[str, ...] = ()
) -> None:
    """For a trainer that ships to a job backend's container: ask its --help here, with this
    interpreter, and check every parameter and the seed flag as the local backend does, before
    anything is uploaded. When it cannot answer here (its dependencies live only in the
    container), a warning says its flags go unchecked; the study is not refused for that."""
    trainer = space.trainer
    try:
        flags = flags_here(space, env)
    except UserError as exc:
        log.warning(
            "the trainer's flags are not checked before submitting: %s (its container may "
            "have what this machine lacks; --skip-trainer-check silences this)",
            str(exc).removeprefix("--trainer: "),
        )
        return
    check_parameters(space, flags, trainer.module or trainer.script, extra)
