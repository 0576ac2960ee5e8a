"""The emulator's resources: protobuf messages by resource name, guarded by one lock.

Every read hands out a copy and every write goes through update(), so HTTP threads and job
threads never see a half-written resource.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from google.protobuf.message import Message

from vertex_emulator.errors import not_found


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
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Message] = {}
        # Vertex job ids are long decimal numbers; start from the clock so ids differ across runs.
        self._ids = itertools.count(int(time.time()) * 1000)

    def add(self, parent: str, collection: str, message: Message) -> Message:
        """Store `message` as a new resource under parent/collection; returns a copy, named."""
        with self._lock:
            message.name = f"{parent}/{collection}/{next(self._ids)}"
            touch(message, "create_time")
            self._items[message.name] = copy_of(message)
            return copy_of(message)

    def get(self, name: str) -> Message:
        with self._lock:
            if name not in self._items:
                raise not_found(name)
            return copy_of(self._items[name])

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
            return copy_of(message)
