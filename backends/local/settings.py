"""What the local backend needs beyond the study request: typed, validated on construction;
backends.base.BackendSettings is the protocol it follows."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from trialkit.errors import UserError


@dataclass(frozen=True)
class LocalSettings:
    """Settings of `--backend local`.

    python: the interpreter trials run under (default: dualtune's own).
    seed: the oracle's seed, so a study's suggestions are reproducible.
    prewarm: fork trials from a trial server that did the imports once (False: cold starts).
    hang_timeout_s: fail a trial with no new measurement for this long (None: never).
    check_trainer: ask the trainer's --help for its flags before the first trial.
    """

    python: str | None = None
    seed: int = 1
    prewarm: bool = True
    hang_timeout_s: float | None = None
    check_trainer: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UserError(f"seed: {self.seed!r} is not a whole number; give e.g. seed=1")
        if self.hang_timeout_s is not None and not self.hang_timeout_s > 0:
            raise UserError(
                f"hang_timeout_s: {self.hang_timeout_s!r} must be more than 0; give e.g. 600"
            )

    def record(self) -> dict[str, Any]:
        """What the study record keeps (a resumed study gets the same seed and interpreter)."""
        return {"seed": self.seed, "python": self.python}

    def resumed(self, recorded: dict[str, Any]) -> LocalSettings:
        """These settings for a study that ran before: its seed and interpreter are kept."""
        known = {f.name for f in fields(self)}
        kept = {k: v for k, v in recorded.items() if k in known and v is not None}
        return LocalSettings(**{**_values(self), **kept})

    def resolve(
        self, recorded: dict[str, Any] | None = None, job: str | None = None
    ) -> LocalSettings:
        """Complete as given: nothing to ask anyone (finalize keeps the interpreter given)."""
        return self


def _values(settings: LocalSettings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}
