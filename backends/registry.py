"""Which backends exist: a name -> its settings type and the factory that builds it.

The flow (dualtune/) never names a backend class: it looks one up here by name or by the type
of the settings it was given, so a third backend is one entry here plus its own package.
Entries name their classes as "module:attribute" and import them only when used, so looking a
backend up costs nothing (no TensorFlow, no aiplatform).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from backends.base import Backend, JobBackend
from trialkit.errors import UserError


@dataclass(frozen=True)
class BackendEntry:
    name: str
    settings_path: str  # "module:Class" of its frozen settings dataclass
    backend_path: str  # "module:Class" of its Backend, built by Class.from_settings(settings)
    algorithms: tuple[str, ...]  # the --algorithm values it takes

    @property
    def settings_type(self) -> type:
        return _load(self.settings_path)

    @property
    def backend_type(self) -> type[Backend]:
        return _load(self.backend_path)

    @property
    def submits_jobs(self) -> bool:
        """Whether its studies run as jobs that can be left (--detach) and attached to."""
        return issubclass(self.backend_type, JobBackend)

    def build(self, settings: Any = None) -> Backend:
        """The backend for `settings` (default: the settings type's defaults)."""
        settings = self.settings_type() if settings is None else settings
        return self.backend_type.from_settings(settings)


def _load(path: str) -> Any:
    module, _, attribute = path.partition(":")
    target: Any = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


BACKENDS: dict[str, BackendEntry] = {
    "local": BackendEntry(
        "local",
        "backends.local.settings:LocalSettings",
        "backends.local.backend:LocalBackend",
        ("bayesian", "random", "grid", "hyperband", "vizier"),
    ),
    "vertex": BackendEntry(
        "vertex",
        "backends.vertex.settings:VertexSettings",
        "backends.vertex.backend:VertexBackend",
        ("bayesian", "random", "grid", "vizier"),  # vizier: the service's own default
    ),
}


def names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def job_backends() -> tuple[str, ...]:
    """The backends whose studies run as jobs (JobBackend: --detach, attach)."""
    return tuple(name for name, e in BACKENDS.items() if e.submits_jobs)


def algorithms() -> tuple[str, ...]:
    """Every --algorithm some backend takes, in the order they are listed."""
    return tuple(dict.fromkeys(a for e in BACKENDS.values() for a in e.algorithms))


def entry(name: str) -> BackendEntry:
    try:
        return BACKENDS[name]
    except KeyError:
        raise UserError(
            f"--backend: unknown backend {name!r}; use one of {', '.join(BACKENDS)}"
        ) from None


def entry_for(settings: Any) -> BackendEntry:
    """The entry whose settings type `settings` is an instance of."""
    for candidate in BACKENDS.values():
        if isinstance(settings, candidate.settings_type):
            return candidate
    raise UserError(
        f"backend: {type(settings).__name__} is not the settings of any backend; give a "
        f"backend name ({', '.join(BACKENDS)}) or its settings (LocalSettings, VertexSettings)"
    )
