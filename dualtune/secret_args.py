"""Secrets among `-- extra args` (`--db_password=...`): what records keep of them.

A flag whose name looks secret (password, passwd, secret, token, credential, key) keeps its
name but not its value in study.json: `--db_password=***`. The trials get the real value; a
resumed study or a finalize asks for such args again (`-- --db_password=...`) rather than run
with `***`. The values never reach MLflow, whose params hold only the tuned parameters.
"""

from __future__ import annotations

import re

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
