"""A study's space: the space file with one run's overrides laid over it, checked for a backend.

The overrides come from the edge (CLI flags or Python API arguments) as typed values; everything
a user can get wrong is refused here, before any study record, MLflow run or job exists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.registry import BackendEntry
from search_spaces.model import Baseline, Confirm, SearchSpace, Trust
from trialkit.errors import UserError

DEFAULT_SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "flights.yaml"


@dataclass(frozen=True)
class Overrides:
    """What one run changes of the space file (None: keep the file's value)."""

    algorithm: str | None = None
    max_trials: int | None = None
    parallel_trials: int | None = None
    max_failed_trials: int | None = None
    trainer: str | None = None  # a module (a.b.task) or a script path (x.py)
    baseline: bool = True  # False: run no baseline (--no-baseline)
    confirm: bool = True  # False: confirm no trial (--no-confirm)
    executions_per_trial: int | None = None

    def __post_init__(self) -> None:
        for name in ("baseline", "confirm"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name}: {getattr(self, name)!r} must be True or False")
        checks = (
            ("max_trials", 1),
            ("parallel_trials", 1),
            ("max_failed_trials", 0),
            ("executions_per_trial", 1),
        )
        for name, least in checks:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise UserError(f"--{name.replace('_', '-')}: {value!r} is not a whole number")
            if value is not None and value < least:
                raise UserError(
                    f"--{name.replace('_', '-')}: {value} must be at least {least}; give e.g. 10"
                )


def is_variable_name(key: str) -> bool:
    """Letters, digits and '_', not starting with a digit: what a shell takes as a name."""
    return bool(key) and key.replace("_", "a").isalnum() and not key[0].isdigit()


def check_env(env: dict[str, str]) -> dict[str, str]:
    """Environment variables for every trial: names must be variable names."""
    for key, value in env.items():
        if not is_variable_name(key):
            raise UserError(
                f"--env: {key!r} is not a variable name; write it like --env TF_CPP_MIN_LOG_LEVEL=2"
            )
        if not isinstance(value, str):
            raise UserError(f"--env: the value of {key} must be a string (got {value!r})")
    return dict(env)


def load(path: Path | str | None) -> tuple[SearchSpace, Path]:
    """The space file at `path` (default: the flights study), validated."""
    from search_spaces.loader import load_space

    path = Path(path) if path is not None else DEFAULT_SPACE
    if not path.is_file():
        raise UserError(f"--space: {path} does not exist; give a search-space YAML file")
    return load_space(path), path


def merged_space(
    space: SearchSpace, overrides: Overrides, extra: tuple[str, ...], backend: BackendEntry
) -> SearchSpace:
    """The space file with the overrides laid over it, checked for `backend`."""
    budget = space.budget
    max_trials = overrides.max_trials or budget.max_trials
    parallel = overrides.parallel_trials
    if parallel and parallel > max_trials:
        raise UserError(
            f"--parallel-trials: {parallel} exceeds --max-trials {max_trials} (or "
            f"the space's budget.max_trials); use --parallel-trials {max_trials} or fewer"
        )
    _check_extra_args(extra, space)
    failed = overrides.max_failed_trials
    budget = dataclasses.replace(
        budget,
        max_trials=max_trials,
        parallel_trials=parallel or min(budget.parallel_trials, max_trials),
        max_failed_trials=budget.max_failed_trials if failed is None else failed,
    )
    trainer = space.trainer
    if overrides.trainer:
        from backends.trainer_check import parse_trainer

        module, script = parse_trainer(overrides.trainer)
        trainer = dataclasses.replace(trainer, module=module, script=script)
    if trainer.script:  # the record must not depend on the cwd it was made in
        trainer = dataclasses.replace(trainer, script=str(Path(trainer.script).resolve()))
    algorithm = overrides.algorithm or space.algorithm
    _check_algorithm(space, algorithm, backend)
    return dataclasses.replace(
        space, budget=budget, trainer=trainer, algorithm=algorithm, trust=_trust(space, overrides)
    )


def _trust(space: SearchSpace, overrides: Overrides) -> Trust:
    """The space's trust section with --no-baseline, --no-confirm, --executions-per-trial."""
    trust, off = space.trust, {"enabled": False}
    if not overrides.baseline:
        trust = dataclasses.replace(trust, baseline=dataclasses.replace(trust.baseline, **off))
    if not overrides.confirm:
        trust = dataclasses.replace(trust, confirm=dataclasses.replace(trust.confirm, **off))
    if overrides.executions_per_trial is not None:
        trust = dataclasses.replace(trust, executions_per_trial=overrides.executions_per_trial)
    return trust


def trust_record(trust: Trust) -> dict[str, Any]:
    """What study.json keeps of the trust section, so resume, attach and finalize see it."""
    return dataclasses.asdict(trust)


def _recorded_trust(space: SearchSpace, recorded: dict[str, Any] | None) -> Trust:
    if not recorded:
        return space.trust
    return Trust(
        baseline=Baseline(**recorded.get("baseline", {})),
        confirm=Confirm(**recorded.get("confirm", {})),
        executions_per_trial=recorded.get("executions_per_trial", 1),
    )


def _check_extra_args(extra: tuple[str, ...], space: SearchSpace) -> None:
    """`-- extra args` come before the parameters, so one that sets a tuned parameter would be
    silently overridden: refuse it."""
    for arg in extra:
        for name in space.names:
            if arg == f"--{name}" or arg.startswith(f"--{name}="):
                raise UserError(
                    f"--: {arg!r} sets parameters.{name}, which the study tunes; remove it, or "
                    f"make {name} a fixed parameter in {space.source}"
                )


def _check_algorithm(space: SearchSpace, algorithm: str, backend: BackendEntry) -> None:
    if algorithm not in backend.algorithms:
        *most, last = backend.algorithms
        choices = f"{', '.join(most)} or {last}" if most else last
        raise UserError(
            f"--algorithm {algorithm}: the {backend.name} backend has no {algorithm}; use "
            f"{choices} with --backend {backend.name}"
        )
    if algorithm == "grid":
        for p in space.parameters:
            if p.type == "double" and p.step is None:
                raise UserError(
                    f"--algorithm grid: {space.source}: parameters.{p.name} is a double without "
                    f"step, which a grid cannot enumerate; add a step or use --algorithm random"
                )


def recorded_space(space_file: Path, meta: dict[str, Any]) -> SearchSpace:
    """The space a study ran: its copied file (script paths anchored where the original was),
    with the budget, trainer and algorithm it was submitted with."""
    from search_spaces.loader import load_space_text

    source = Path(meta.get("space_source") or space_file)
    space = load_space_text(
        space_file.read_text(encoding="utf-8"),
        source=str(space_file),
        base_dir=source.parent,
        name=source.stem,
    )
    budget = dataclasses.replace(space.budget, **meta.get("budget", {}))
    trainer = dataclasses.replace(
        space.trainer,
        **{k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("trainer", {}).items()},
    )
    algorithm = meta.get("algorithm", space.algorithm)
    trust = _recorded_trust(space, meta.get("trust"))
    return dataclasses.replace(
        space, budget=budget, trainer=trainer, algorithm=algorithm, trust=trust
    )
