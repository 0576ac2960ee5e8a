"""`dualtune tune`: merge flags over the space file, check everything, run, record.

Everything a user can get wrong is checked before anything is created: no study directory,
MLflow run or job exists until the space, the flags, the tracking URI and the trainer are good.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from backends.base import COMPLETED, StudyEnded, StudyRequest
from backends.local.oracles import check_algorithm_available
from dualtune import studies
from dualtune.tracking import resolve_tracking_uri
from search_spaces.errors import UserError
from search_spaces.model import SearchSpace

log = logging.getLogger(__name__)

DEFAULT_SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "flights.yaml"


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise UserError(
                f"--env: {pair!r} is not KEY=VALUE with KEY a variable name; "
                f"write it like --env TF_CPP_MIN_LOG_LEVEL=2"
            )
        env[key] = value
    return env


def merged_space(args: argparse.Namespace, space: SearchSpace) -> SearchSpace:
    """The space file with the command-line flags laid over it."""
    budget = space.budget
    max_trials = args.max_trials or budget.max_trials
    if args.parallel_trials and args.parallel_trials > max_trials:
        raise UserError(
            f"--parallel-trials: {args.parallel_trials} exceeds --max-trials {max_trials} (or "
            f"the space's budget.max_trials); use --parallel-trials {max_trials} or fewer"
        )
    _check_extra_args(args.extra, space)
    budget = dataclasses.replace(
        budget,
        max_trials=args.max_trials or budget.max_trials,
        parallel_trials=args.parallel_trials
        or min(budget.parallel_trials, args.max_trials or budget.max_trials),
        max_failed_trials=(
            budget.max_failed_trials if args.max_failed_trials is None else args.max_failed_trials
        ),
    )
    trainer = space.trainer
    if args.trainer:
        from dualtune.trainer_check import parse_trainer

        module, script = parse_trainer(args.trainer)
        trainer = dataclasses.replace(trainer, module=module, script=script)
    algorithm = args.algorithm or space.algorithm
    _check_algorithm(space, algorithm, args.backend)
    return dataclasses.replace(space, budget=budget, trainer=trainer, algorithm=algorithm)


def _check_extra_args(extra: list[str], space: SearchSpace) -> None:
    """`-- extra args` come before the parameters, so one that sets a tuned parameter would be
    silently overridden: refuse it."""
    for arg in extra:
        for name in space.names:
            if arg == f"--{name}" or arg.startswith(f"--{name}="):
                raise UserError(
                    f"--: {arg!r} sets parameters.{name}, which the study tunes; remove it, or "
                    f"make {name} a fixed parameter in {space.source}"
                )


def _check_algorithm(space: SearchSpace, algorithm: str, backend: str) -> None:
    if backend == "local":  # on Vertex, vizier is the service's own default algorithm
        check_algorithm_available(algorithm)
    if algorithm == "grid":
        for p in space.parameters:
            if p.type == "double" and p.step is None:
                raise UserError(
                    f"--algorithm grid: {space.source}: parameters.{p.name} is a double without "
                    f"step, which a grid cannot enumerate; add a step or use --algorithm random"
                )
    if algorithm == "hyperband" and backend == "vertex":
        raise UserError(
            "--algorithm hyperband: Vertex AI has no Hyperband; use bayesian, "
            "random or grid with --backend vertex (or --backend local)"
        )


def _load(args: argparse.Namespace) -> tuple[SearchSpace, Path]:
    from search_spaces.loader import load_space

    path = args.space or DEFAULT_SPACE
    if not path.is_file():
        raise UserError(f"--space: {path} does not exist; give a search-space YAML file")
    return load_space(path), path


def _check_trainer(space: SearchSpace, args: argparse.Namespace, env: dict[str, str]) -> None:
    from backends.local.process import base_env, python_argv
    from dualtune.trainer_check import check_parameters, check_python, trainer_flags

    check_python(args.python)
    trainer = space.trainer
    if trainer.script and not Path(trainer.script).is_file():
        raise UserError(
            f"{space.source}: trainer.script: {trainer.script} does not exist; "
            f"fix the path (relative to the space file) or use --trainer"
        )
    if args.skip_trainer_check:
        return
    argv = python_argv(args.python, trainer.module, trainer.script)
    full_env = base_env(env, trainer.module)
    check_parameters(space, trainer_flags(argv, full_env), trainer.module or trainer.script)


def tune(args: argparse.Namespace) -> int:
    env = parse_env(args.env)
    uri, artifacts = resolve_tracking_uri(args.tracking_uri)
    if args.resume:
        study, space = _resume(args)
    else:
        space, path = _load(args)
        space = merged_space(args, space)
        name = studies.check_name(args.study) if args.study else studies.default_name(space.name)
        if (args.workdir / name).exists():
            studies.create(args.workdir, name, path, {})  # raises the clear "exists" error
        if space.trainer.script:  # the record must not depend on the cwd it was made in
            absolute = str(Path(space.trainer.script).resolve())
            space = dataclasses.replace(
                space, trainer=dataclasses.replace(space.trainer, script=absolute)
            )
        if args.backend == "local":
            _check_trainer(space, args, env)
        else:
            from dualtune.vertex_cli import preflight

            preflight(args, space)
        meta = {
            "backend": args.backend,
            "algorithm": space.algorithm,
            "space_source": str(path),
            "budget": dataclasses.asdict(space.budget),
            "seed": args.seed,
            "trainer": dataclasses.asdict(space.trainer),
            "extra_args": args.extra,
            "env_keys": sorted(env),
        }
        study = studies.create(args.workdir, name, path, meta)
    if args.backend == "vertex":
        from dualtune.vertex_cli import run_vertex

        return run_vertex(args, study, space, env, uri, artifacts)
    return _run_local(args, study, space, env, uri, artifacts)


def _resume(args: argparse.Namespace) -> tuple[studies.StudyDir, SearchSpace]:
    study = studies.find(args.workdir, args.study)
    meta = study.meta()
    if meta.get("backend", "local") != args.backend:
        raise UserError(
            f"--backend: study {study.name} ran on {meta.get('backend')}; "
            f"resume it with --backend {meta.get('backend')}"
        )
    if not args.extra:
        args.extra = meta.get("extra_args", [])
    args.seed = meta.get("seed", args.seed)
    return study, recorded_space(study, meta)


def recorded_space(study: studies.StudyDir, meta: dict[str, Any]) -> SearchSpace:
    """The space the study ran: its copied file (script paths anchored where the original was),
    with the budget, trainer and algorithm it was submitted with."""
    from search_spaces.loader import load_space_text

    source = Path(meta.get("space_source") or study.space_file)
    space = load_space_text(
        study.space_file.read_text(encoding="utf-8"),
        source=str(study.space_file),
        base_dir=source.parent,
        name=source.stem,
    )
    budget = dataclasses.replace(space.budget, **meta.get("budget", {}))
    trainer = dataclasses.replace(
        space.trainer,
        **{k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("trainer", {}).items()},
    )
    algorithm = meta.get("algorithm", space.algorithm)
    return dataclasses.replace(space, budget=budget, trainer=trainer, algorithm=algorithm)


def _run_local(
    args: argparse.Namespace,
    study: studies.StudyDir,
    space: SearchSpace,
    env: dict[str, str],
    uri: str,
    artifacts: str | None,
) -> int:
    from backends.local.backend import LocalBackend

    request = StudyRequest(
        study=study.name,
        space=dataclasses.replace(space, source=str(study.space_file)),
        workdir=study.path.resolve(),
        extra_args=tuple(args.extra),
        env=env,
        python=args.python,
        options={
            "algorithm": space.algorithm,
            "seed": args.seed,
            "hang_timeout_s": args.hang_timeout,
        },
    )
    backend = LocalBackend(prewarm=not args.no_prewarm)
    ended = run_recorded(backend.run, request, uri, artifacts)
    study.update(
        status=ended.status, best_trial_id=ended.best_trial_id, best_value=ended.best_value
    )
    _print_where(study.name, uri)
    return exit_code(ended)


def run_recorded(run, request: Any, uri: str, artifacts: str | None) -> StudyEnded:
    """Run with the standard recorders (MLflow, display) behind a dispatcher."""
    from dualtune.display import Display
    from dualtune.mlflow_recorder import MlflowRecorder
    from dualtune.recording import Dispatcher

    dispatcher = Dispatcher([MlflowRecorder(uri, artifacts), Display()])
    try:
        return run(request, dispatcher)
    finally:
        dispatcher.close()


def exit_code(ended: StudyEnded) -> int:
    if ended.status == COMPLETED:
        return 0
    return 130 if "interrupted" in ended.reason else 1


def _print_where(name: str, uri: str) -> None:
    print(f"see it: dualtune trials --study {name}   |   dualtune ui   (MLflow store: {uri})")


def attach(args: argparse.Namespace) -> int:
    from dualtune.vertex_cli import attach_job

    return attach_job(args)
