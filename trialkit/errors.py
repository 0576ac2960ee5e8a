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


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a `kill`, `docker stop`, a closed terminal), raised where Ctrl-C
    raises KeyboardInterrupt (the CLI turns them into this), so that every stop takes Ctrl-C's
    path: trials stopped, events recorded, the study resumable. Its text is the signal's name."""


def interruption(exc: BaseException) -> str:
    """How a stop reads in a reason: by Ctrl-C, or by the signal the CLI turned into one."""
    if isinstance(exc, Interrupted) and str(exc):
        return f"interrupted by {exc}"
    return "interrupted by the user (Ctrl-C)"


class BackendError(DualtuneError):
    """A backend could not run or finish a study (API error, job failed, too many failed trials)."""

    exit_code = 1
