"""`dualtune pipeline`: tune, finalize and (when asked) deploy as one command that picks up
where it stopped when run again.

Each step's state lives in the study record: study.json's "pipeline" section, written
atomically before and after each step: `running` (when it began), then `done` with what it
made (tune: the study's end status and best trial; finalize: the MLflow run and the registered
model version; deploy: where the model was served). Run again with the same --study:
- a done step is skipped, with one line saying so;
- a tune that did not finish is resumed (Study.resume: finished trials are kept);
- a finalize that did not finish is run again (finalize retrains from scratch). A killed
  finalize leaves its MLflow run RUNNING; that run is settled first: if it had registered its
  model version (registering is finalize's last step) the version is kept and the step is
  done, else the run is marked FAILED with the reason, so one pipeline registers one version;
- deploy runs last. Locally it serves in the foreground until Ctrl-C/SIGTERM, as `dualtune
  deploy` does; its step is then `stopped`, and a later run with --deploy serves again. On
  vertex it deploys the finalized model's Vertex Model Registry version to an endpoint (found
  by display name or created, as `dualtune deploy --backend vertex` does) and returns; the
  step is `done` with the endpoint, and a later run skips it.
The pipeline follows a Vertex study to its end (no detach). The pipeline's own process id is
recorded, so a second pipeline on the same study while the first runs is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from trialkit.errors import UserError
from trialkit.status import COMPLETED

log = logging.getLogger(__name__)

SECTION = "pipeline"
RUNNING, DONE, STOPPED, FAILED = "running", "done", "stopped", "failed"
CLOCK_SLACK_MS = 2000  # a finalize run's start time against the step's (same machine, ms)


@dataclass(frozen=True)
class TuneOptions:
    """How a new study is tuned (the `dualtune tune` flags); a study that exists keeps its own
    and refuses a different value."""

    space: str | None = None
    algorithm: str | None = None
    max_trials: int | None = None
    parallel_trials: int | None = None
    max_failed_trials: int | None = None
    trainer: str | None = None
    baseline: bool = True  # False: --no-baseline
    confirm: bool = True  # False: --no-confirm
    executions_per_trial: int | None = None


@dataclass(frozen=True)
class Serving:
    """Where a local deploy serves (see dualtune/deploy.py)."""

    host: str = "127.0.0.1"
    port: int = 5001
    ready_timeout_s: float = 180.0


@dataclass(frozen=True)
class VertexServing:
    """Where and how a vertex deploy serves (`dualtune deploy --backend vertex`'s flags and
    defaults; `endpoint` None: the space's name)."""

    endpoint: str | None = None
    endpoint_id: str | None = None
    traffic_percent: int = 100
    machine_type: str = "n1-standard-2"
    min_replicas: int = 1
    max_replicas: int = 1
    undeploy_others: bool = False


@dataclass(frozen=True)
class PipelineResult:
    """How the pipeline ended: `tune` is the tune's RunResult when it did not complete (the
    pipeline stopped there); `finalized` the finalize step's record; `served` deploy's exit
    status when it served."""

    study: str
    tune: Any = None
    finalized: dict[str, Any] | None = None
    served: int | None = None

    @property
    def ok(self) -> bool:
        return self.finalized is not None and self.served in (None, 0)


def run_pipeline(
    study: Any,
    backend: str,
    settings: Any,
    options: TuneOptions,
    extra_args: tuple[str, ...],
    env: dict[str, str],
    serving: Serving | VertexServing | None = None,
    display: bool = True,
) -> PipelineResult:
    """Run `study` (a dualtune.api.Study, new or recorded) through tune -> finalize ->
    deploy on `backend`, skipping the steps its record says are done."""
    check(study, backend, options, extra_args, serving)
    say = study.say
    tuned = _tune_step(study, backend, settings, options, extra_args, env, display)
    if tuned is not None:
        return PipelineResult(study.name, tune=tuned)
    finalized = _finalize_step(study, settings, extra_args, env)
    if serving is None:
        say(f"pipeline of study {study.name} done: model {_model_line(finalized)}")
        return PipelineResult(study.name, finalized=finalized)
    if isinstance(serving, VertexServing):
        served = _deploy_vertex_step(study, finalized, serving, settings)
    else:
        served = _deploy_step(study, finalized, serving)
    return PipelineResult(study.name, finalized=finalized, served=served)


# -- checks: before anything runs -----------------------------------------------------------------
def check(
    study: Any,
    backend: str,
    options: TuneOptions,
    extra_args: tuple[str, ...],
    serving: Serving | VertexServing | None,
) -> None:
    """Bad input is refused before any step runs: deploy flags of the other backend, a taken
    port, secret-looking extra args where they would reach a job's spec, and for a study that
    exists, another backend, flags that differ from what it was tuned with, or a pipeline of
    it still running."""
    from backends.registry import entry
    from dualtune.secret_args import check_job_args

    _check_serving(backend, serving)
    check_job_args(entry(backend), extra_args)
    if not study.exists:
        return
    meta = study.record.meta()
    ran_on = (meta.get(SECTION) or {}).get("backend") or meta.get("backend", "local")
    if backend != ran_on:
        raise UserError(
            f"--backend {backend}: study {study.name} ran on {ran_on}; run the pipeline again "
            f"with --backend {ran_on}, or choose another --study"
        )
    _check_same_tuning(study, meta, options, extra_args)
    _check_not_running(study, meta)


def _check_serving(backend: str, serving: Serving | VertexServing | None) -> None:
    if serving is None:
        return
    where = "vertex" if isinstance(serving, VertexServing) else "local"
    if backend != where:
        raise UserError(
            f"--deploy: {where} deploy settings for a study on the {backend} backend; run the "
            f"pipeline with --backend {where}, or drop the {where} deploy flags"
        )
    if isinstance(serving, Serving):
        from dualtune.deploy import check_port_free

        check_port_free(serving.host, serving.port)


def _check_same_tuning(
    study: Any, meta: dict[str, Any], options: TuneOptions, extra_args: tuple[str, ...]
) -> None:
    """A flag given again must say what the study was tuned with: it cannot change now."""
    budget = meta.get("budget") or {}
    trainer = meta.get("trainer") or {}
    trust = meta.get("trust") or {}
    recorded = {
        "--space": (options.space, meta.get("space_source")),
        "--algorithm": (options.algorithm, meta.get("algorithm")),
        "--max-trials": (options.max_trials, budget.get("max_trials")),
        "--parallel-trials": (options.parallel_trials, budget.get("parallel_trials")),
        "--max-failed-trials": (options.max_failed_trials, budget.get("max_failed_trials")),
        "--trainer": (options.trainer, trainer.get("module") or trainer.get("script")),
        "-- (trainer args)": (list(extra_args) or None, meta.get("extra_args")),
        "--no-baseline": (
            None if options.baseline else "no baseline",
            _on_off("baseline", (trust.get("baseline") or {}).get("enabled", True)),
        ),
        "--no-confirm": (
            None if options.confirm else "no confirmation",
            _on_off("confirmation", (trust.get("confirm") or {}).get("enabled", True)),
        ),
        "--executions-per-trial": (
            options.executions_per_trial,
            trust.get("executions_per_trial", 1),
        ),
    }
    for flag, (given, was) in recorded.items():
        if given is None or _same(flag, given, was, trainer):
            continue
        raise UserError(
            f"{flag}: study {study.name} was tuned with {was!r}, not {given!r}; run the "
            f"pipeline again with the same flags (or none) to pick it up, or choose another --study"
        )


def _on_off(what: str, enabled: bool) -> str:
    return what if enabled else f"no {what}"


def _same(flag: str, given: Any, was: Any, trainer: dict[str, Any]) -> bool:
    from pathlib import Path

    if flag == "--space":
        return was is not None and Path(given).resolve() == Path(was).resolve()
    if flag == "--trainer":
        return given in (trainer.get("module"), trainer.get("script"))
    return given == was


def _check_not_running(study: Any, meta: dict[str, Any]) -> None:
    section = meta.get(SECTION) or {}
    pid, host = section.get("pid"), section.get("host")
    if not pid or pid == os.getpid() or host != socket.gethostname():
        return
    if not any(step.get("state") == RUNNING for step in section.get("steps", {}).values()):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # it died (killed): pick up where it stopped
    except PermissionError:
        pass
    raise UserError(
        f"--study: a pipeline of study {study.name} is running (pid {pid}); wait for it or "
        f"stop it, then run the pipeline again"
    )


# -- the record -----------------------------------------------------------------------------------
def _steps(study: Any) -> dict[str, dict[str, Any]]:
    if not study.exists:
        return {}
    return dict((study.record.meta().get(SECTION) or {}).get("steps") or {})


def _section(backend: str, steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"backend": backend, "pid": os.getpid(), "host": socket.gethostname(), "steps": steps}


def _mark(study: Any, step: str, state: str, **produced: Any) -> dict[str, Any]:
    """Record `step` as `state` with what it produced, atomically (study_record.update)."""
    meta = study.record.meta()
    section = meta.get(SECTION) or _section(meta.get("backend", "local"), {})
    entry = {"state": state, "at": time.time(), **produced}
    section.update(pid=os.getpid(), host=socket.gethostname())
    section.setdefault("steps", {})[step] = entry
    study.record.update(**{SECTION: section})
    return entry


# -- tune -----------------------------------------------------------------------------------------
def _tune_step(
    study: Any,
    backend: str,
    settings: Any,
    options: TuneOptions,
    extra: tuple[str, ...],
    env: dict[str, str],
    display: bool,
) -> Any:
    """Tune (new), resume (interrupted) or skip (done); None when tuning is complete, else
    the RunResult that stops the pipeline."""
    if study.exists and study.record.meta().get("status") == COMPLETED:
        step = _steps(study).get("tune") or {}
        if step.get("state") != DONE:  # a study tuned before, or killed right at its end
            step = _mark(study, "tune", DONE, **_tuned(study.record.meta()))
        study.say(f"tune: done (best trial {step.get('best_trial_id')}); skipped")
        return None
    if study.exists:
        _mark(study, "tune", RUNNING)
        study.say(f"tune: study {study.name} did not finish; resuming it")
        result = study.resume(settings, extra_args=extra or None, env=env, display=display)
    else:
        result = _tune_new(study, backend, settings, options, extra, env, display)
    if result.status == COMPLETED:
        _mark(study, "tune", DONE, **_tuned(study.record.meta()))
        return None
    _mark(study, "tune", FAILED if result.status == "FAILED" else STOPPED, status=result.status)
    return result


def _tune_new(
    study: Any,
    backend: str,
    settings: Any,
    options: TuneOptions,
    extra: tuple[str, ...],
    env: dict[str, str],
    display: bool,
) -> Any:
    """A new study, its record created whole with the pipeline's section (tune running)."""
    steps = {"tune": {"state": RUNNING, "at": time.time()}}
    return study.run(
        settings,
        algorithm=options.algorithm,
        max_trials=options.max_trials,
        parallel_trials=options.parallel_trials,
        max_failed_trials=options.max_failed_trials,
        trainer=options.trainer,
        extra_args=extra,
        env=env,
        display=display,
        record={SECTION: _section(backend, steps)},
        baseline=options.baseline,
        confirm=options.confirm,
        executions_per_trial=options.executions_per_trial,
    )


def _tuned(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in ("status", "best_trial_id", "best_value")}


# -- finalize -------------------------------------------------------------------------------------
def _finalize_step(
    study: Any, settings: Any, extra: tuple[str, ...], env: dict[str, str]
) -> dict[str, Any]:
    """Finalize (the study's winner, retrained), or skip it when done; a finalize a killed
    pipeline left behind is settled first (see the module docstring)."""
    step = _steps(study).get("finalize") or {}
    if step.get("state") == DONE:
        study.say(f"finalize: done (model {_model_line(step)}); skipped")
        return step
    if step.get("state") == RUNNING:
        adopted = _settle(study, step)
        if adopted is not None:
            return adopted
    _mark(study, "finalize", RUNNING, started=time.time())
    try:
        done = study.finalize(settings, extra_args=extra or None, env=env)
    except BaseException:
        _mark(study, "finalize", FAILED)
        raise
    return _mark(
        study,
        "finalize",
        DONE,
        run_id=done.run_id,
        model=done.model,
        version=done.version,
        trial_id=done.trial_id,
    )


def _settle(study: Any, step: dict[str, Any]) -> dict[str, Any] | None:
    """End the finalize runs a killed pipeline left RUNNING; the step's record when one of
    them had registered its version (kept: the step is done), else None (finalize again)."""
    from dualtune import mlflow_layout as layout
    from dualtune.mlflow_recorder import settle_interrupted_finalize
    from dualtune.tracking import client, resolve_tracking_uri

    uri, _ = resolve_tracking_uri(study.tracking_uri)
    mlflow_client = client(uri)
    since = int(step.get("started", step.get("at", 0)) * 1000) - CLOCK_SLACK_MS
    reason = "interrupted: the pipeline running this finalize was stopped; it finalized again"
    adopted = None
    for run in layout.running_finalize_runs(mlflow_client, study.name, since):
        version = settle_interrupted_finalize(mlflow_client, run, reason)
        study.say(
            f"finalize: the interrupted finalize run {run.info.run_id} "
            + (f"had registered version {version}; kept" if version else "is marked FAILED")
        )
        if version and adopted is None:
            adopted = _mark(
                study,
                "finalize",
                DONE,
                run_id=run.info.run_id,
                model=study.name,
                version=version,
                trial_id=layout.best_trial_of(run),
            )
    if adopted is None:
        study.say("finalize: it did not finish; finalizing again")
    return adopted


def _model_line(step: dict[str, Any]) -> str:
    return f"{step.get('model')} version {step.get('version')} (MLflow run {step.get('run_id')})"


# -- deploy ---------------------------------------------------------------------------------------
def _deploy_step(study: Any, finalized: dict[str, Any], serving: Serving) -> int:
    """Serve the finalized version locally in the foreground until Ctrl-C/SIGTERM; the step
    is `running` while it serves and `stopped` after."""
    from dualtune.deploy import serve_local
    from dualtune.served_model import finalized_model
    from dualtune.tracking import client, resolve_tracking_uri

    uri, _ = resolve_tracking_uri(study.tracking_uri)
    model = finalized_model(client(uri), study.name, str(finalized["version"]))
    url = f"http://{serving.host}:{serving.port}"
    _mark(study, "deploy", RUNNING, version=model.version, url=url)
    code = 1
    try:
        code = serve_local(
            model, uri, serving.host, serving.port, study.record.path, study.say,
            serving.ready_timeout_s,
        )  # fmt: skip
    finally:
        _mark(study, "deploy", STOPPED, version=model.version, url=url, exit_status=code)
    return code


def _deploy_vertex_step(
    study: Any, finalized: dict[str, Any], serving: VertexServing, settings: Any
) -> int:
    """Deploy the finalized version's Vertex model to its endpoint (dualtune/vertex_serving.py)
    and return; a deploy of that version already done is skipped."""
    step = _steps(study).get("deploy") or {}
    if step.get("state") == DONE and step.get("version") == str(finalized["version"]):
        study.say(
            f"deploy: done (endpoint {step.get('endpoint')}); skipped. Another endpoint: "
            f"dualtune deploy --backend vertex --study {study.name} --endpoint NAME"
        )
        return 0
    from dualtune.tracking import client, resolve_tracking_uri
    from dualtune.vertex_serving import deploy_vertex, vertex_backend, vertex_version

    uri, _ = resolve_tracking_uri(study.tracking_uri)
    model, vertex = vertex_version(client(uri), study.name, str(finalized["version"]))
    backend, space = vertex_backend(study.record, settings)
    options = dataclasses.asdict(serving)
    options["endpoint_name"] = options.pop("endpoint") or space
    _mark(study, "deploy", RUNNING, version=model.version, model=vertex)
    try:
        code = deploy_vertex(study.record, backend, model, vertex, options, study.say)
    except BaseException:
        _mark(study, "deploy", FAILED, version=model.version, model=vertex)
        raise
    deployed = _vertex_deployment(study)
    _mark(study, "deploy", DONE, version=model.version, model=vertex, **deployed)
    return code


def _vertex_deployment(study: Any) -> dict[str, Any]:
    """What deploy_vertex recorded in the study's folder: the endpoint and deployed model."""
    import json

    from dualtune.vertex_serving import VERTEX_DEPLOYMENT_FILE

    done = json.loads((study.record.path / VERTEX_DEPLOYMENT_FILE).read_text())
    return {"endpoint": done["endpoint"], "deployed_model_id": done["deployedModelId"]}
