"""Render a search space as one target sees it, for `dualtune space show FILE --target T`."""

from __future__ import annotations

import json

from search_spaces.model import SearchSpace
from trialkit.errors import SpaceError

TARGETS = ("keras-tuner", "vertex")


def show(space: SearchSpace, target: str) -> str:
    """JSON (indent 2) of what `target` receives: for "vertex" the StudySpec as the REST API gets
    it; for "keras-tuner" HyperParameters.get_config() (each hyperparameter's class and config).
    Both are written from the data model without importing their SDKs (seconds each), so the
    command answers at once; tests hold them equal to what the SDKs produce."""
    if target == "vertex":
        from search_spaces.vertex_json import study_spec_dict

        return json.dumps(study_spec_dict(space), indent=2)
    if target in ("keras-tuner", "keras_tuner"):
        from search_spaces.keras_tuner_compiler import hyperparameters_config

        return json.dumps(hyperparameters_config(space), indent=2)
    raise SpaceError(f"--target: unknown target {target!r}; use keras-tuner or vertex")
