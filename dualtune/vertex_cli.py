"""The command-line side of the Vertex backend: settings from flags, `tune`, `attach`, `finalize`.

Where a study runs: --emulator URL (or DUALTUNE_VERTEX_EMULATOR) for a local `dualtune emulator`,
whose project, region and bucket are the defaults; otherwise --project, --region and
--staging-bucket are required. Flags win over what the study recorded when it was submitted
(study.json "vertex"), which wins over nothing: `attach` and `finalize` need no flags again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from backends.base import (
    FAILED,
    Backend,
    FinalizeRequest,
    FinalizeResult,
    Sink,
    StudyEnded,
    StudyRequest,
    StudyStarted,
)
from dualtune import studies
from search_spaces.errors import BackendError, DualtuneError, UserError
from search_spaces.model import SearchSpace

log = logging.getLogger(__name__)

EMULATOR_ENV = "DUALTUNE_VERTEX_EMULATOR"
INFO_PATHS = ("/dualtune-emulator/info", "/dualtune/info")
EMULATOR_POLL_S = 0.5  # local calls are cheap; real Vertex uses the backend's default


@dataclasses.dataclass(frozen=True)
class Settings:
    project: str
    region: str
    staging_bucket: str
    emulator: str | None = None
    emulator_workdir: str | None = None  # where the emulator keeps gs:// paths, if local

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


# -- settings -----------------------------------------------------------------------------------
def resolve_settings(
    args: argparse.Namespace, recorded: dict[str, Any] | None = None, job: str | None = None
) -> Settings:
    """Flags, then the emulator's own settings or the study's record, then the job's name."""
    recorded = recorded or {}
    from_job = _job_fields(job) if job else {}
    emulator = args.emulator or os.environ.get(EMULATOR_ENV)
    if not emulator and not (args.project or args.region or args.staging_bucket):
        emulator = recorded.get("emulator")  # where the study ran, unless told otherwise
    info: dict[str, Any] = {}
    if emulator:
        info = emulator_info(emulator, "--emulator" if args.emulator else EMULATOR_ENV)
        if info.get("storageUrl"):  # google-cloud-storage (package uploads) reads it
            os.environ["STORAGE_EMULATOR_HOST"] = info["storageUrl"]
    fallback = {**recorded, **from_job} if not emulator else {**from_job}
    project = args.project or info.get("project") or fallback.get("project")
    region = args.region or info.get("location") or fallback.get("region")
    bucket = args.staging_bucket or info.get("bucket") or recorded.get("staging_bucket")
    for flag, value in (("--project", project), ("--region", region)):
        if not value:
            raise UserError(
                f"{flag}: required with --backend vertex; give it, or --emulator URL to use a "
                f"local `dualtune emulator`"
            )
    if not bucket:
        raise UserError(
            "--staging-bucket: required with --backend vertex; give gs://BUCKET (in the same "
            "region) for the trainer package and trial outputs"
        )
    bucket = bucket.rstrip("/")
    if not bucket.startswith("gs://") or len(bucket) <= len("gs://"):
        raise UserError(
            f"--staging-bucket: {bucket!r} is not a Cloud Storage URI; write it as gs://BUCKET"
        )
    workdir = info.get("workdir") if emulator else None
    return Settings(project, region, bucket, emulator.rstrip("/") if emulator else None, workdir)


def emulator_info(url: str, source: str) -> dict[str, Any]:
    """What a running `dualtune emulator` says about itself (project, location, bucket...)."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UserError(f"{source}: {url!r} is not an http:// URL; e.g. http://127.0.0.1:8780")
    for path in INFO_PATHS:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as answer:
                return json.loads(answer.read().decode("utf-8"))
        except urllib.error.HTTPError:
            continue  # an emulator without this endpoint: the flags must say the rest
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise UserError(
                f"{source}: no Vertex emulator answers at {url} "
                f"({getattr(err, 'reason', err)}); start one with `dualtune emulator` and pass "
                f"the URL it prints"
            ) from None
    log.warning("%s at %s says nothing about itself; using the flags", source, url)
    return {}


def _job_fields(job: str) -> dict[str, str]:
    parts = job.split("/")
    if len(parts) == 6 and parts[0] == "projects" and parts[2] == "locations":
        return {"project": parts[1], "region": parts[3]}
    return {}


def make_backend(args: argparse.Namespace, settings: Settings) -> Backend:
    from backends.vertex import VertexBackend

    accelerator_count = args.accelerator_count
    if args.accelerator_type and not accelerator_count:
        accelerator_count = 1
    if accelerator_count and not args.accelerator_type:
        raise UserError(
            "--accelerator-count: needs --accelerator-type too, e.g. --accelerator-type "
            "NVIDIA_TESLA_T4"
        )
    return VertexBackend(
        project=settings.project,
        region=settings.region,
        staging_bucket=settings.staging_bucket,
        machine_type=args.machine_type,
        accelerator_type=args.accelerator_type,
        accelerator_count=accelerator_count,
        container_uri=args.container_uri,
        service_account=args.service_account,
        network=args.network,
        api_endpoint=settings.emulator,
        **_emulator_options(settings),
    )


def _emulator_options(settings: Settings) -> dict[str, Any]:
    if not settings.emulator:
        return {}
    root = settings.emulator_workdir
    return {"poll_s": EMULATOR_POLL_S, "local_root": Path(root) if root else None}


# -- tune ---------------------------------------------------------------------------------------
def run_vertex(
    args: argparse.Namespace,
    study: studies.StudyDir,
    space: SearchSpace,
    env: dict[str, str],
    uri: str,
    artifacts: str | None,
) -> int:
    """`dualtune tune --backend vertex`: submit, then follow (or return at once with --detach)."""
    from dualtune.tune import run_recorded

    meta = study.meta()
    if args.resume and meta.get("job"):
        print(f"study {study.name} already submitted {meta['job']}; following it")
        args.job, args.study = meta["job"], study.name
        return attach_job(args)
    journal = _Journal(study)
    try:
        settings = resolve_settings(args, meta.get("vertex"))
        _check(space)
        backend = make_backend(args, settings)
        study.update(vertex=settings.record())
        request = _request(study, space, args.extra, env)
        if args.detach:
            job = run_recorded(
                lambda r, s: backend.submit(r, journal.sink(s)), request, uri, artifacts
            )
            print(f"detached; follow it with: dualtune attach {job}")
            return 0
        ended = run_recorded(lambda r, s: backend.run(r, journal.sink(s)), request, uri, artifacts)
    except DualtuneError:
        if not journal.job and not args.resume:
            shutil.rmtree(study.path, ignore_errors=True)  # nothing was submitted: no study
        elif journal.job:
            study.update(status=FAILED)
        raise
    return _finish(study, ended, uri)


def preflight(args: argparse.Namespace, space: SearchSpace) -> None:
    """Everything a new vertex study needs, checked before its record is created."""
    resolve_settings(args, None)
    _check(space)


def _check(space: SearchSpace) -> None:
    """What Vertex would refuse, refused here first: before anything is uploaded or created."""
    from backends.vertex.packaging import check_trainer
    from search_spaces import vertex_compiler

    vertex_compiler.search_algorithm(space)  # hyperband: a one-line SpaceError
    check_trainer(space.trainer, space.source)


def _request(
    study: studies.StudyDir, space: SearchSpace, extra: list[str], env: dict[str, str]
) -> StudyRequest:
    return StudyRequest(
        study=study.name,
        space=dataclasses.replace(space, source=str(study.space_file)),
        workdir=study.path.resolve(),
        extra_args=tuple(extra or ()),
        env=env,
        options={"algorithm": space.algorithm},
    )


class _Journal:
    """Writes the job's name into the study record the moment it exists, and says where it is."""

    def __init__(self, study: studies.StudyDir) -> None:
        self.study = study
        self.job: str | None = None

    def sink(self, downstream: Sink) -> Sink:
        def forward(event: Any) -> None:
            if isinstance(event, StudyStarted) and event.attrs.get("job"):
                self.job = event.attrs["job"]
                self.study.update(job=self.job, console_url=event.attrs.get("console_url"))
                print(f"Vertex job {self.job}\n  console: {event.attrs.get('console_url')}")
            downstream(event)

        return forward


def _finish(study: studies.StudyDir, ended: StudyEnded, uri: str) -> int:
    from dualtune.tune import exit_code

    study.update(
        status=ended.status, best_trial_id=ended.best_trial_id, best_value=ended.best_value
    )
    print(f"see it: dualtune trials --study {study.name}   |   dualtune ui   (MLflow store: {uri})")
    if ended.status == FAILED:
        first = ended.reason.strip().splitlines()[0] if ended.reason.strip() else "no reason given"
        raise BackendError(
            f"study {study.name}: {first}; see each trial's failure reason with "
            f"`dualtune trials --study {study.name}`"
        )
    return exit_code(ended)


# -- attach -------------------------------------------------------------------------------------
def attach_job(args: argparse.Namespace) -> int:
    """`dualtune attach JOB`: bring MLflow up to date with the job, then follow it to its end."""
    from dualtune.tracking import resolve_tracking_uri
    from dualtune.tune import recorded_space, run_recorded

    uri, artifacts = resolve_tracking_uri(args.tracking_uri)
    study = _study_of(args.workdir, args.job, args.study)
    meta = study.meta()
    job = _full_name(args.job, meta.get("job"))
    settings = resolve_settings(args, meta.get("vertex"), job=job)
    job = _full_name(job, None, settings)
    backend = make_backend(args, settings)
    request = _request(study, recorded_space(study, meta), meta.get("extra_args", []), {})
    try:
        ended = run_recorded(lambda r, s: backend.attach(job, r, s), request, uri, artifacts)
    except KeyboardInterrupt:
        print(f"stopped following; the job goes on. Follow it again: dualtune attach {job}")
        return 130
    return _finish(study, ended, uri)


def _study_of(workdir: Path, job: str, name: str | None) -> studies.StudyDir:
    if name:
        return studies.find(workdir, name)
    for path in sorted(workdir.glob("*/study.json")):
        try:
            recorded = json.loads(path.read_text()).get("job") or ""
        except (OSError, ValueError):
            continue
        if recorded and (recorded == job or recorded.rsplit("/", 1)[-1] == job):
            return studies.StudyDir(path.parent)
    raise UserError(
        f"attach: no study in {workdir} submitted {job}; pass --study NAME (and --workdir "
        f"where its record lives)"
    )


def _full_name(job: str, recorded: str | None, settings: Settings | None = None) -> str:
    """projects/P/locations/L/hyperparameterTuningJobs/ID from a full name or a bare ID."""
    if "/" in job:
        return job
    if recorded and recorded.rsplit("/", 1)[-1] == job:
        return recorded
    if settings is None:
        return job
    return f"projects/{settings.project}/locations/{settings.region}/hyperparameterTuningJobs/{job}"


# -- finalize -----------------------------------------------------------------------------------
class _FinalizeOnVertex(Backend):
    """Builds the VertexBackend from the flags `dualtune finalize` received (options["args"])."""

    name = "vertex"

    def run(self, request: StudyRequest, sink: Sink) -> StudyEnded:
        raise NotImplementedError("tuning goes through run_vertex")

    def finalize(self, request: FinalizeRequest, sink: Sink) -> FinalizeResult:
        from backends.vertex.packaging import check_trainer

        args = request.options["args"]
        if getattr(args, "vertex_model_registry", False):
            raise UserError(
                "--vertex-model-registry: not supported yet (the emulator serves no Model "
                "Registry to test it against); the model is registered in MLflow"
            )
        meta = studies.StudyDir(request.workdir).meta()
        settings = resolve_settings(args, meta.get("vertex"))
        check_trainer(request.space.trainer, str(request.space.source))
        return make_backend(args, settings).finalize(request, sink)


def vertex_backend_for_finalize() -> Backend:
    return _FinalizeOnVertex()
