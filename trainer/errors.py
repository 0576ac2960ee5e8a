"""The trainer's one exception: a problem the user can fix, reported as one line, exit status 2."""

from __future__ import annotations


class TrainerError(Exception):
    """Bad input the user can fix: a data path, a CSV schema, a checkpoint directory."""

    exit_code = 2
