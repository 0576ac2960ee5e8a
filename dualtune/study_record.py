"""The study record on disk: studies/<name>/ holds study.json, a copy of the space, the oracle's
state and each trial's files; `--resume`, `trials`, `finalize` and `attach` start from it.

`create` writes a new record whole; from then on StudyRecorder, a recorder of the study's
events like the MLflow one, is what keeps study.json up to date (the job a study submitted, its
status and best trial)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import Event, ExecutionEnded, StudyEnded, StudyStarted, StudyVerdict
from search_spaces.model import Budget, Trainer
from trialkit import atomic
from trialkit.errors import UserError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class StudyRecord:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def space_file(self) -> Path:
        return self.path / "space.yaml"

    def meta(self) -> dict[str, Any]:
        """study.json, checked: a damaged record is one line naming the file, what is wrong
        and the fix (UserError), never a traceback from whoever reads it next."""
        path = self.path / "study.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise UserError(
                f"{self.path}: not a dualtune study (no study.json); check --study/--workdir"
            ) from exc
        except OSError as exc:
            raise UserError(
                f"{path}: cannot read it ({exc.strerror}); fix its permissions"
            ) from None
        return check_meta(path, data)

    def update(self, **fields: Any) -> None:
        meta = self.meta()
        meta.update(fields)
        write_json_atomic(self.path / "study.json", meta)


# Fields a record may hold and the JSON types they must have; "study" is required.
_FIELDS: dict[str, tuple[type, ...]] = {
    "study": (str,),
    "created": (int, float),
    "backend": (str,),
    "algorithm": (str,),
    "space_source": (str,),
    "budget": (dict,),
    "trainer": (dict,),
    "extra_args": (list,),
    "env_keys": (list,),
    "job": (str, type(None)),
    "console_url": (str, type(None)),
    "status": (str, type(None)),
    "tracking_uri": (str,),
    "tracking_uri_credentials": (bool,),
    "local": (dict,),
    "vertex": (dict,),
    "finalized": (dict,),  # the last finalize: its backend and Vertex model (deploy's default)
}
# The record keeps these as the space model's dataclasses (asdict): their fields, so a field
# added to the model is known here too.
_SUBFIELDS = {
    "budget": tuple(f.name for f in dataclasses.fields(Budget)),
    "trainer": tuple(f.name for f in dataclasses.fields(Trainer)),
}


def check_meta(path: Path, data: bytes) -> dict[str, Any]:
    """The record in `data` (the bytes of `path`) as a dict, or UserError saying what is wrong."""
    fix = (
        "restore it from a backup, or start a new study with another --study name "
        f"(finished trials stay in MLflow; `rm -r {path.parent}` frees the name)"
    )
    if not data.strip():
        raise UserError(f"{path}: the study record is empty; {fix}")
    try:
        meta = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: the study record is not text (binary data); {fix}") from None
    except ValueError as exc:
        raise UserError(f"{path}: the study record is not valid JSON ({exc}); {fix}") from None
    if not isinstance(meta, dict):
        what = type(meta).__name__
        raise UserError(f"{path}: the study record is a JSON {what}, not an object; {fix}")
    if "study" not in meta:
        raise UserError(f"{path}: the study record has no 'study' field; {fix}")
    for key, types in _FIELDS.items():
        if key in meta and not isinstance(meta[key], types):
            got = type(meta[key]).__name__
            raise UserError(f"{path}: field {key!r} of the study record is a {got}; {fix}")
    for key, allowed in _SUBFIELDS.items():
        unknown = sorted(set(meta.get(key, {})) - set(allowed))
        if unknown:
            raise UserError(f"{path}: field {key!r} has unknown key {unknown[0]!r}; {fix}")
    return meta


def check_writable(root: Path, flag: str = "--workdir") -> None:
    """Refuse a study folder that cannot be written (read-only filesystem or permissions)
    before anything is created: `root`, or the nearest folder above it that exists."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"{flag}: {existing} is read-only, so no study can be recorded in {root}; "
            f"give a writable directory with {flag}"
        )


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise UserError(
            f"--study: {name!r} is not a valid study name; use letters, digits, '_', '-' or '.' "
            f"(at most 100, starting with a letter or digit)"
        )
    return name


def recorded_tracking_uri(root: Path, names: list[str | None]) -> str | None:
    """The MLflow store the first of `names` that exists in `root` (None: the most recent
    study) was recorded to; None when there is no such study or it recorded none. A damaged
    record is a UserError."""
    for name in names:
        try:
            record = find(root, name)
        except UserError:
            continue
        meta = record.meta()
        if meta.get("tracking_uri_credentials"):
            raise UserError(
                f"{record.path}: study {record.name} was recorded to {meta.get('tracking_uri')} "
                f"with credentials, which dualtune does not keep; give --tracking-uri (or "
                f"MLFLOW_TRACKING_URI) with them"
            )
        return meta.get("tracking_uri")
    return None


def recorded_backend(meta: dict[str, Any]) -> str:
    """The backend a study was tuned on, from its record (a record without one: local):
    the default backend of `tune --resume` and `finalize`."""
    return meta.get("backend") or "local"


def finalized_backend(meta: dict[str, Any]) -> str:
    """Where the study's last finalize put a model to serve: vertex when it uploaded one to
    the Vertex Model Registry, else local (MLflow's registry): deploy's default backend."""
    return "vertex" if (meta.get("finalized") or {}).get("vertex_model") else "local"


def default_name(space_name: str) -> str:
    return f"{space_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def create(root: Path, name: str, space_source: Path, meta: dict[str, Any]) -> StudyRecord:
    """Make a new study directory, complete or not at all."""
    target = root / check_name(name)
    if target.exists():
        raise UserError(
            f"--study: study {name!r} already exists in {target}; "
            f"add --resume to continue it, or choose another --study name"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"--workdir: cannot create the folder {root} ({exc.strerror}); "
            f"give a writable directory with --workdir"
        ) from None
    staging = root / f".{name}.creating-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        shutil.copyfile(space_source, staging / "space.yaml")
        write_json_atomic(staging / "study.json", {"study": name, "created": time.time(), **meta})
        os.rename(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)  # complete or not at all
        if isinstance(exc, OSError) and exc.errno in atomic.FULL:
            raise atomic.disk_full(exc.filename or staging, exc) from None
        raise
    return StudyRecord(target)


def find(root: Path, name: str | None) -> StudyRecord:
    """The named study, or the most recently created one."""
    if name:
        study = StudyRecord(root / check_name(name))
        if not (study.path / "study.json").exists():
            raise UserError(
                f"--study: no study {name!r} in {root}; run `dualtune tune --study {name}` first "
                f"or pass --workdir where it lives"
            )
        return study
    return latest(root)


def latest(root: Path) -> StudyRecord:
    """The most recently CREATED study in `root`: the one rule for every command that defaults
    to "the latest study" (trials, compare, finalize, deploy, predict, ui, tune --resume).
    Updating a study (finalize, resume, a trial ending) rewrites its study.json, so the file's
    modification time is not when it was made; the `created` time each record gets once is.
    A folder being created (a dot name) is not a study yet."""
    candidates = [p.parent for p in root.glob("*/study.json") if NAME.match(p.parent.name)]
    if not candidates:
        raise UserError(f"--study: no study found in {root}; run `dualtune tune` first")
    return StudyRecord(max(candidates, key=lambda path: (created(path), path.name)))


def created(study_dir: Path) -> float:
    """When the study in `study_dir` was made: its record's `created` field; for a record
    written before it had one (or one that cannot be read: whoever reads it next says what is
    wrong), its space.yaml's modification time (copied once, when the study was made), else
    study.json's."""
    try:
        value = json.loads((study_dir / "study.json").read_bytes()).get("created")
    except (OSError, ValueError, AttributeError):
        value = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    for name in ("space.yaml", "study.json"):
        try:
            return (study_dir / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def write_json_atomic(path: Path, data: Any) -> None:
    """study.json and its kind: whole or not at all (see trialkit/atomic.py)."""
    atomic.write_json_atomic(path, data, indent=2, sort_keys=True)


def find_by_job(root: Path, job: str) -> StudyRecord:
    """The study in `root` whose record names the Vertex job `job` (full name or bare ID)."""
    for path in sorted(root.glob("*/study.json")):
        try:
            recorded = json.loads(path.read_text()).get("job") or ""
        except (OSError, ValueError):
            continue
        if recorded and (recorded == job or recorded.rsplit("/", 1)[-1] == job):
            return StudyRecord(path.parent)
    raise UserError(
        f"attach: no study in {root} submitted {job}; pass --study NAME (and --workdir "
        f"where its record lives)"
    )


class StudyRecorder:
    """Keeps study.json up to date from the study's events: the job it submitted (the moment
    it exists, so a crash right after still knows it), then its end. `say` tells a person."""

    def __init__(self, study: StudyRecord, say=None) -> None:
        self.study = study
        self.say = say
        self.started = False  # StudyStarted seen: the backend started or submitted something

    def handle(self, event: Event) -> None:
        if isinstance(event, StudyStarted):
            self.started = True
            job = event.job
            if job:
                console = event.console_url
                self.study.update(job=job, console_url=console)
                if self.say:
                    self.say(f"Vertex job {job}\n  console: {console}")
        elif isinstance(event, ExecutionEnded):  # so a resumed study does not run it again
            executions = dict(self.study.meta().get("executions") or {})
            executions[event.execution_id] = {
                "role": event.role,
                "status": str(event.status),
                "final": event.final_value,
                "trial_id": event.trial_id,
            }
            self.study.update(executions=executions)
        elif isinstance(event, StudyVerdict):
            self.study.update(verdict=dataclasses.asdict(event))
        elif isinstance(event, StudyEnded):
            self.study.update(
                status=event.status, best_trial_id=event.best_trial_id, best_value=event.best_value
            )
