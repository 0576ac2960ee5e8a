"""The one exception root of dualtune and its few meaningful subclasses (the bottom layer:
every package may import it; `dualtune.errors` re-exports it for API users).

A UserError is something the user can fix: the CLI prints its message as one line and exits 2,
with no traceback. Everything else is a bug or an outage and keeps its traceback.
"""

from __future__ import annotations


class DualtuneError(Exception):
    """Root of every error dualtune raises on purpose."""


class UserError(DualtuneError):
    """Bad input (file, flag, field): one line naming it and the fix; exit status 2."""

    exit_code = 2


class SpaceError(UserError):
    """A search-space file that either target would reject."""


class BackendError(DualtuneError):
    """A backend could not run or finish a study (API error, job failed, too many failed trials)."""

    exit_code = 1
