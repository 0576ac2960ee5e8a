"""dualtune: one search space, two backends (Keras Tuner, Vertex AI), MLflow for both.

The Python API (see dualtune/api.py and the README):

    import dualtune
    study = dualtune.Study.from_file("search_spaces/flights.yaml")
    study.run("local", max_trials=4)

Names are imported on first use, so `import dualtune` (and `dualtune --help`) stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Study": "dualtune.api",
    "RunResult": "dualtune.api",
    "LocalSettings": "backends.local.settings",
    "VertexSettings": "backends.vertex.settings",
    "emulator_settings": "dualtune.emulator_client",
    "DualtuneError": "trialkit.errors",
    "UserError": "trialkit.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dualtune' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
