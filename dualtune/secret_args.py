"""Secrets among `-- extra args` (`--db_password=...`): what records keep of them.

A flag whose name looks secret (password, passwd, secret, token, credential, key) keeps its
name but not its value in study.json: `--db_password=***`. The trials get the real value; a
resumed study or a finalize asks for such args again (`-- --db_password=...`) rather than run
with `***`. The values never reach MLflow, whose params hold only the tuned parameters.

A backend whose studies run as jobs (vertex) refuses them: its extra args become the job's
container args, which the job's spec shows to whoever can read the project's jobs, and which
the emulator runs on a command line `ps` shows; the container's environment (`--env`) is the
place for a secret there.
"""

from __future__ import annotations

import re
from typing import Any

from trialkit.errors import UserError

MASK = "***"
_SECRET = re.compile(
    r"passw(or)?d|secret|token|credential|(^|[-_])(api|access|private)?_?key($|[-_])|apikey",
    re.IGNORECASE,
)


def is_secret_flag(name: str) -> bool:
    """Whether --`name` looks like it carries a secret."""
    return bool(_SECRET.search(name.lstrip("-")))


def redact(args: tuple[str, ...] | list[str]) -> list[str]:
    """`args` with the value of each secret-looking flag replaced by MASK: `--x=VALUE` and
    `--x VALUE` alike."""
    kept: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next and not arg.startswith("-"):
            kept.append(MASK)
            hide_next = False
            continue
        hide_next = False
        name, sep, _ = arg.partition("=")
        if arg.startswith("-") and is_secret_flag(name):
            if sep:
                kept.append(f"{name}={MASK}")
                continue
            hide_next = True
        kept.append(arg)
    return kept


def recorded_args(recorded: list[str], given: tuple[str, ...] | list[str] | None, study: str,
                  command: str) -> tuple[str, ...]:  # fmt: skip
    """The extra args a resumed study or a finalize runs with: those given, else the recorded
    ones, unless a secret was masked in the record: then the user must give them again."""
    if given:
        return tuple(given)
    masked = [arg for arg in recorded if arg == MASK or arg.endswith(f"={MASK}")]
    if masked:
        raise UserError(
            f"-- extra args: study {study} ran with secret values that its record does not "
            f"keep ({' '.join(recorded)}); give them again: dualtune {command} --study {study} "
            f"-- {' '.join(recorded).replace(MASK, 'VALUE')}"
        )
    return tuple(recorded)


def check_job_args(backend: Any, args: tuple[str, ...] | list[str]) -> None:
    """Refuse secret-looking extra args on a backend whose studies run as jobs (`backend`: a
    backends.registry.BackendEntry): one line naming the flag and the fix (--env)."""
    if not backend.submits_jobs:
        return
    for arg in args:
        name = arg.partition("=")[0]
        if arg.startswith("-") and is_secret_flag(name):
            variable = name.lstrip("-").replace("-", "_").upper()
            raise UserError(
                f"-- {name}: on the {backend.name} backend extra args become the job's "
                f"container args, which its job spec and `ps` show; pass the secret as --env "
                f"{variable}=VALUE (the container's environment) and have the trainer read it"
            )
