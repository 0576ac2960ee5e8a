"""The study record on disk: studies/<name>/ holds study.json, a copy of the space, the oracle's
state and each trial's files; `--resume`, `trials`, `finalize` and `attach` start from it."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_spaces.errors import UserError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class StudyDir:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def space_file(self) -> Path:
        return self.path / "space.yaml"

    def meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "study.json").read_text())
        except FileNotFoundError as exc:
            raise UserError(
                f"{self.path}: not a dualtune study (no study.json); check --study/--workdir"
            ) from exc

    def update(self, **fields: Any) -> None:
        meta = self.meta()
        meta.update(fields)
        write_json_atomic(self.path / "study.json", meta)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise UserError(
            f"--study: {name!r} is not a valid study name; use letters, digits, '_', '-' or '.' "
            f"(at most 100, starting with a letter or digit)"
        )
    return name


def default_name(space_name: str) -> str:
    return f"{space_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def create(root: Path, name: str, space_source: Path, meta: dict[str, Any]) -> StudyDir:
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
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # complete or not at all
        raise
    return StudyDir(target)


def find(root: Path, name: str | None) -> StudyDir:
    """The named study, or the most recently created one."""
    if name:
        study = StudyDir(root / check_name(name))
        if not (study.path / "study.json").exists():
            raise UserError(
                f"--study: no study {name!r} in {root}; run `dualtune tune --study {name}` first "
                f"or pass --workdir where it lives"
            )
        return study
    candidates = sorted(
        (p for p in root.glob("*/study.json")), key=lambda p: p.stat().st_mtime, reverse=True
    )
    if not candidates:
        raise UserError(f"--study: no study found in {root}; run `dualtune tune` first")
    return StudyDir(candidates[0].parent)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
