"""The emulator's resources: protobuf messages by resource name, guarded by one lock, and kept
in <workdir>/resources/ so that a restarted emulator has its jobs back (recovery.py).

Every read hands out a copy and every write goes through update(), so HTTP threads and job
threads never see a half-written resource. Each write replaces the resource's JSON file
atomically (write, then rename): a kill -9 leaves the last complete version.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.message import Message

from vertex_emulator.errors import not_found

log = logging.getLogger(__name__)


def copy_of(message: Message) -> Message:
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


def touch(message: Message, *fields: str) -> None:
    """Set the given Timestamp fields (and update_time) to now."""
    for name in (*fields, "update_time"):
        if name in message.DESCRIPTOR.fields_by_name:
            getattr(message, name).GetCurrentTime()


class Store:
    """Resources by name; `folder` (None: memory only) keeps one JSON file per resource;
    `classes` maps a collection (customJobs...) to its message class, to read them back."""

    def __init__(self, folder: Path | None = None, classes: dict | None = None) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Message] = {}
        self._folder = folder
        self._classes = classes or {}
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            self._load(folder)
        # Vertex job ids are long decimal numbers; start from the clock so ids differ across
        # runs, and above every id already kept.
        ids = [int(n.rsplit("/", 1)[-1]) for n in self._items if n.rsplit("/", 1)[-1].isdigit()]
        self._ids = itertools.count(max([int(time.time()) * 1000, *(i + 1 for i in ids)]))

    def add(self, parent: str, collection: str, message: Message) -> Message:
        """Store `message` as a new resource under parent/collection; returns a copy, named."""
        with self._lock:
            message.name = f"{parent}/{collection}/{next(self._ids)}"
            touch(message, "create_time")
            self._items[message.name] = copy_of(message)
            self._save(self._items[message.name])
            return copy_of(message)

    def new_id(self) -> str:
        """A fresh resource id, for a resource whose name the caller composes (model versions)."""
        with self._lock:
            return str(next(self._ids))

    def put(self, name: str, message: Message) -> Message:
        """Store `message` under `name` (a new resource); returns a copy."""
        with self._lock:
            message.name = name
            touch(message, "create_time")
            self._items[name] = copy_of(message)
            self._save(self._items[name])
            return copy_of(message)

    def get(self, name: str) -> Message:
        with self._lock:
            if name not in self._items:
                raise not_found(name)
            return copy_of(self._items[name])

    def names(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def list(self, parent: str, collection: str) -> list[Message]:
        prefix = f"{parent}/{collection}/"
        with self._lock:
            return [
                copy_of(m)
                for name, m in self._items.items()
                if name.startswith(prefix) and "/" not in name[len(prefix) :]
            ]

    def update(self, name: str, change: Callable[[Message], object]) -> Message:
        """Apply `change` to the stored message under the lock; returns a copy of the result."""
        with self._lock:
            if name not in self._items:
                raise not_found(name)
            message = self._items[name]
            change(message)
            touch(message)
            self._save(message)
            return copy_of(message)

    # -- on disk ----------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        collection, job_id = name.split("/")[-2:]
        project, location = name.split("/")[1], name.split("/")[3]
        return self._folder / f"{project}~{location}~{collection}~{job_id}.json"

    def _save(self, message: Message) -> None:
        if self._folder is None:
            return
        path = self._path(message.name)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json_format.MessageToJson(message))
        os.replace(partial, path)

    def _load(self, folder: Path) -> None:
        for path in sorted(folder.glob("*.json")):
            parts = path.stem.split("~")
            cls = self._classes.get(parts[2]) if len(parts) == 4 else None
            if cls is None:
                log.warning("ignoring %s: not a resource the emulator keeps", path)
                continue
            message = cls()
            try:
                json_format.Parse(path.read_text(), message)
            except (json_format.ParseError, OSError, UnicodeDecodeError) as err:
                log.warning("ignoring %s: unreadable (%s)", path, err)
                continue
            self._items[message.name] = message
