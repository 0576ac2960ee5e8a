"""dualtune's Python API: the CLI is built on it, and a notebook can use it the same way.

    import dualtune

    study = dualtune.Study.from_file("search_spaces/flights.yaml", name="flights-try")
    result = study.run("local", max_trials=4, parallel_trials=2)
    study.trials()     # TrialRow records, best first, read back from MLflow
    study.best()       # the best one
    study.finalize()   # retrain it to completion, register the model

A backend is named ("local", "vertex") or given as its settings (LocalSettings(seed=3),
dualtune.emulator_settings("http://127.0.0.1:8780")); backends/registry.py turns either into a
Backend. Every run goes through one runner (run_study): MLflow, the study record and the
terminal display record the same events.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import COMPLETED, FAILED, Backend, JobBackend, StudyEnded, StudyRequest
from backends.registry import BackendEntry, entry, entry_for, job_backends
from dualtune import overrides as ov
from dualtune import study_record
from dualtune.secret_args import check_job_args, recorded_args, redact
from dualtune.tracking import check_store_writable, public_uri, resolve_tracking_uri
from search_spaces.model import SearchSpace
from trialkit.errors import DualtuneError, UserError

Say = Callable[[str], None]
ALREADY_COMPLETED = "already completed; nothing to resume"
CLOSE_AFTER_ERROR_S = 15.0  # how long a broken study waits for its recorders to catch up


@dataclass(frozen=True)
class RunResult:
    """How a run of a study ended (`job`: the Vertex job, when one was submitted)."""

    study: str
    status: str  # COMPLETED, FAILED, STOPPED; SUBMITTED for a detached Vertex job
    best_trial_id: str | None = None
    best_value: float | None = None
    reason: str = ""
    job: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (COMPLETED, "SUBMITTED")


def backend_of(backend: str | Any) -> tuple[BackendEntry, Any]:
    """(registry entry, settings) from a backend name or a settings instance (vertex settings
    that name no place: DUALTUNE_VERTEX_EMULATOR's, see dualtune/emulator_client.py)."""
    from dualtune.emulator_client import from_environment

    if isinstance(backend, str):
        found = entry(backend)
        return found, from_environment(found.settings_type())
    return entry_for(backend), from_environment(backend)


class Study:
    """One study: a search space, a name, a record under `workdir`, runs in an MLflow store."""

    def __init__(
        self,
        name: str,
        space: SearchSpace | None,
        space_path: Path,
        workdir: Path | str = "studies",
        tracking_uri: str | None = None,
        say: Say | None = print,
    ) -> None:
        self.name = study_record.check_name(name)
        self._space = space
        self.space_path = Path(space_path)
        self.workdir = Path(workdir)
        self.tracking_uri = tracking_uri
        self.say = say or (lambda _text: None)

    # -- finding a study ------------------------------------------------------------------------
    @classmethod
    def from_file(
        cls, path: Path | str | None = None, name: str | None = None, **kwargs: Any
    ) -> Study:
        """A new study of the space file at `path` (default: the flights study). Nothing is
        written until run(); name defaults to <space name>-<date-time>."""
        space, source = ov.load(path)
        return cls(name or study_record.default_name(space.name), space, source, **kwargs)

    @classmethod
    def load(cls, name: str | None = None, workdir: Path | str = "studies", **kwargs: Any) -> Study:
        """A study that exists in `workdir` (default: the most recently created one)."""
        record = study_record.find(Path(workdir), name)
        source = Path(record.meta().get("space_source") or record.space_file)
        return cls(record.name, None, source, workdir=workdir, **kwargs)

    @property
    def space(self) -> SearchSpace:
        """The study's space: as recorded for a study that exists, else the file's."""
        if self._space is None:
            self._space = ov.recorded_space(self.record.space_file, self.record.meta())
        return self._space

    @property
    def record(self) -> study_record.StudyRecord:
        return study_record.StudyRecord(self.workdir / self.name)

    @property
    def exists(self) -> bool:
        return (self.record.path / "study.json").is_file()

    def store(self, write: bool = False) -> tuple[str, str | None]:
        """(tracking URI, artifact location) of this study: the tracking_uri given, else
        MLFLOW_TRACKING_URI, else the store its record names, else the default store.
        `write`: refuse a store that cannot be written, before anything starts."""
        recorded = None
        if not self.tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI") and self.exists:
            recorded = study_record.recorded_tracking_uri(self.workdir, [self.name])
        uri, artifacts = resolve_tracking_uri(self.tracking_uri, recorded)
        if write:
            check_store_writable(uri)
        return uri, artifacts

    # -- running ----------------------------------------------------------------------------
    def run(
        self,
        backend: str | Any = "local",
        *,
        algorithm: str | None = None,
        max_trials: int | None = None,
        parallel_trials: int | None = None,
        max_failed_trials: int | None = None,
        trainer: str | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
        env: dict[str, str] | None = None,
        detach: bool = False,
        display: bool = True,
        record: dict[str, Any] | None = None,
        baseline: bool = True,
        confirm: bool = True,
        executions_per_trial: int | None = None,
    ) -> RunResult:
        """Create the study's record and run it on `backend` to its end (`detach`: submit a
        Vertex job and return; `record`: more sections for study.json, the pipeline's).
        Everything is checked before anything is created.

        After the search the study runs the baseline (the trainer's defaults, at several
        seeds) and re-runs its top trials at fresh seeds, and names the winner (see
        dualtune/trust.py); `baseline=False` / `confirm=False` turn either off;
        `executions_per_trial` overrides the space's."""
        found, settings = backend_of(backend)
        extra, env = tuple(extra_args), ov.check_env(env or {})
        check_job_args(found, extra)
        overrides = ov.Overrides(
            algorithm, max_trials, parallel_trials, max_failed_trials, trainer,
            baseline, confirm, executions_per_trial,
        )  # fmt: skip
        if self.exists or self.record.path.exists():
            study_record.create(self.workdir, self.name, self.space_path, {})  # the "exists" error
        study_record.check_writable(self.workdir)
        uri, artifacts = resolve_tracking_uri(self.tracking_uri)
        check_store_writable(uri)
        space = ov.merged_space(self.space, overrides, extra, found)
        if detach:
            _submits_jobs(found, "--detach")
        built = found.build(settings)
        request = StudyRequest(self.name, space, self.record.path.resolve(), extra, env)
        built.preflight(request)
        meta = {
            "backend": found.name,
            "algorithm": space.algorithm,
            "space_source": str(self.space_path),
            "budget": dataclasses.asdict(space.budget),
            "trainer": dataclasses.asdict(space.trainer),
            "extra_args": redact(extra),  # secrets' values stay out of the record
            "env_keys": sorted(env),
            "trust": ov.trust_record(space.trust),
            found.name: built.record(),
            **_store_fields(uri),
            **(record or {}),
        }
        record = study_record.create(self.workdir, self.name, self.space_path, meta)
        self._space = space
        request = dataclasses.replace(request, space=_in_record(space, record))
        return self._run(built, request, (uri, artifacts), detach, display, fresh=True)

    def resume(
        self,
        backend: str | Any | None = None,
        *,
        extra_args: tuple[str, ...] | list[str] | None = None,
        env: dict[str, str] | None = None,
        display: bool = True,
    ) -> RunResult:
        """Continue an interrupted study from its record: finished trials are kept, a running
        one resumes from its checkpoint; a submitted Vertex job is followed again."""
        meta = self.record.meta()
        if meta.get("status") == COMPLETED:
            best = f"; best trial {meta['best_trial_id']}" if meta.get("best_trial_id") else ""
            self.say(f"study {self.name} already completed{best}; nothing to resume")
            return RunResult(
                self.name, COMPLETED, meta.get("best_trial_id"), meta.get("best_value"),
                ALREADY_COMPLETED,
            )  # fmt: skip
        ran_on = study_record.recorded_backend(meta)
        found, settings = backend_of(ran_on if backend is None else backend)
        if found.name != ran_on:
            raise UserError(
                f"--backend: study {self.name} ran on {ran_on}; resume it with --backend {ran_on}"
            )
        if meta.get("job"):
            self.say(f"study {self.name} already submitted {meta['job']}; following it")
            return self.attach(meta["job"], settings, display=display)
        extra = recorded_args(meta.get("extra_args", []), extra_args, self.name, "tune --resume")
        check_job_args(found, extra)
        study_record.check_writable(self.record.path)
        uri, artifacts = self.store(write=True)
        built = found.build(settings.resumed(_recorded_settings(meta, found.name)))
        request = self._recorded_request(meta, extra, ov.check_env(env or {}))
        return self._run(built, request, (uri, artifacts), False, display, fresh=False)

    def attach(self, job: str, backend: str | Any = "vertex", *, display: bool = True) -> RunResult:
        """Follow a job this study submitted earlier (a full name or a bare ID); bring MLflow
        up to date with it."""
        found, settings = backend_of(backend)
        _submits_jobs(found, "attach")
        meta = self.record.meta()
        job = _recorded_job(job, meta.get("job"))
        built = found.build(settings.resolve(_recorded_settings(meta, found.name), job=job))
        assert isinstance(built, JobBackend)  # the entry said so
        job = built.job_name(job)
        uri, artifacts = self.store(write=True)
        request = self._recorded_request(meta, tuple(meta.get("extra_args", [])), {})
        ended = run_study(
            lambda r, s: built.attach(job, r, s), request, uri, artifacts, self.record,
            self.say, display, backend=built,
        )  # fmt: skip
        return _result(ended)

    def _recorded_request(
        self, meta: dict[str, Any], extra: tuple[str, ...], env: dict[str, str]
    ) -> StudyRequest:
        """The request of a study that exists: the space it ran, as its record holds it."""
        space = _in_record(ov.recorded_space(self.record.space_file, meta), self.record)
        return StudyRequest(self.name, space, self.record.path.resolve(), extra, env)

    def _run(
        self,
        built: Backend,
        request: StudyRequest,
        tracking: tuple[str, str | None],
        detach: bool,
        display: bool,
        fresh: bool,
    ) -> RunResult:
        recorder = study_record.StudyRecorder(self.record, self.say)
        call = built.submit if detach and isinstance(built, JobBackend) else built.run
        try:
            ended = run_study(
                call, request, *tracking, self.record, self.say, display, recorder, backend=built
            )
        except BaseException as exc:  # a user error, a store that failed, a crash, Ctrl-C
            if not recorder.started and fresh:  # nothing ran or was submitted: no study
                shutil.rmtree(self.record.path, ignore_errors=True)
            elif recorder.started and isinstance(exc, DualtuneError):
                self.record.update(status=FAILED)
            raise
        if detach:
            return RunResult(self.name, "SUBMITTED", job=str(ended))
        return _result(ended)

    # -- reading back -------------------------------------------------------------------------
    def trials(self) -> list[Any]:
        """The study's trials as recorded in MLflow (TrialRow records), best first."""
        from dualtune.report import study_runs
        from dualtune.tracking import client

        uri, _ = self.store()
        return study_runs(client(uri), self.name)[1]

    def best(self) -> Any:
        """The best finished trial (TrialRow); UserError when none finished."""
        from dualtune.report import best_trial

        return best_trial(self.trials())

    def finalize(
        self,
        backend: str | Any | None = None,
        *,
        extra_args: tuple[str, ...] | list[str] | None = None,
        env: dict[str, str] | None = None,
        register: bool = True,
    ) -> Any:
        """Retrain the study's winner (its verdict's: a trial, or the guess) to completion on
        `backend` (default: the backend the study was tuned on) and register the model in
        MLflow, and (`register`) in the backend's own registry where it has one (the Vertex
        Model Registry); see dualtune/finalize.py. Returns what was registered; the record
        keeps where (`finalized`), so that deploy serves it there by default."""
        from dualtune.finalize import finalize_study

        meta = self.record.meta()
        found, settings = backend_of(
            study_record.recorded_backend(meta) if backend is None else backend
        )
        built = found.build(settings.resolve(_recorded_settings(meta, found.name)))
        extra = recorded_args(meta.get("extra_args", []), extra_args, self.name, "finalize")
        check_job_args(found, extra)
        done = finalize_study(
            self.record,
            built,
            extra,
            ov.check_env(env or {}),
            self.store(write=True)[0],
            self.say,
            register=register,
        )
        self.record.update(finalized={"backend": found.name, "vertex_model": done.vertex_model})
        return done

    def pipeline(
        self,
        backend: str | Any = "local",
        *,
        tune: Any = None,
        extra_args: tuple[str, ...] | list[str] = (),
        env: dict[str, str] | None = None,
        serve: Any = None,
        display: bool = True,
    ) -> Any:
        """Tune, finalize and (with `serve`, a pipeline.Serving: locally, in the foreground
        until Ctrl-C) deploy, as one run that picks up where it stopped: steps the record
        says are done are skipped (see dualtune/pipeline.py). `tune`: a pipeline.TuneOptions."""
        from dualtune.pipeline import TuneOptions, run_pipeline

        found, settings = backend_of(backend)
        env = ov.check_env(env or {})
        options = tune or TuneOptions()
        return run_pipeline(
            self, found.name, settings, options, tuple(extra_args), env, serve, display
        )


def run_study(
    call: Callable,
    request: StudyRequest,
    uri: str,
    artifacts: str | None,
    record: study_record.StudyRecord,
    say: Say,
    display: bool = True,
    recorder: study_record.StudyRecorder | None = None,
    *,
    backend: Backend | None = None,
) -> Any:
    """The one study runner: `call(request, sink)` with the standard recorders behind a
    dispatcher (MLflow, the study record, the terminal display), each in its own lane. With
    `backend`, the study also runs its baseline and confirmations on it and names its winner
    (dualtune/trust.py) before it ends."""
    from dualtune.display import Display
    from dualtune.mlflow_recorder import MlflowRecorder
    from dualtune.recording import Dispatcher
    from dualtune.tracking import prepare_store

    prepare_store(uri)
    recorders: list[Any] = [
        MlflowRecorder(uri, artifacts),
        recorder or study_record.StudyRecorder(record, say),
    ]
    if display:
        recorders.append(Display())
    dispatcher = Dispatcher(recorders)
    try:
        if backend is None:
            ended = call(request, dispatcher)
        else:
            from dualtune.trust import run_with_trust

            ended = run_with_trust(call, backend, request, dispatcher, record)
    except BaseException:
        # The study broke (a full disk, say): what the recorders could not write yet is
        # replayed by --resume, so a store that is down too is not waited on for long.
        dispatcher.close(timeout_s=CLOSE_AFTER_ERROR_S)
        raise
    dispatcher.close()
    return ended


def _store_fields(uri: str) -> dict[str, Any]:
    """What study.json keeps of the store: its URI without credentials, and whether it had
    some (then reading the study back needs --tracking-uri again)."""
    public = public_uri(uri)
    return {"tracking_uri": public, **({"tracking_uri_credentials": True} if public != uri else {})}


def _submits_jobs(found: BackendEntry, what: str) -> None:
    """Refuse `what` (--detach, attach) on a backend whose studies are no jobs."""
    if not found.submits_jobs:
        raise UserError(
            f"{what}: the {found.name} backend runs studies in this process and submits no "
            f"jobs; drop {what} or use --backend {' or '.join(job_backends())}"
        )


def _recorded_job(job: str, recorded: str | None) -> str:
    """The record's full job name when `job` is its bare ID; else `job` as given."""
    if "/" not in job and recorded and recorded.rsplit("/", 1)[-1] == job:
        return recorded
    return job


def _in_record(space: SearchSpace, record: study_record.StudyRecord) -> SearchSpace:
    """The space as backends see it: its source is the record's copy of the file."""
    return dataclasses.replace(space, source=str(record.space_file))


def _recorded_settings(meta: dict[str, Any], backend: str) -> dict[str, Any]:
    """The settings a study recorded (and records written before settings were: the seed at
    the top level, vertex under "vertex" as now)."""
    recorded = dict(meta.get(backend) or {})
    if backend == "local" and "seed" in meta:
        recorded.setdefault("seed", meta["seed"])
    return recorded


def _result(ended: StudyEnded) -> RunResult:
    return RunResult(ended.study, ended.status, ended.best_trial_id, ended.best_value, ended.reason)
