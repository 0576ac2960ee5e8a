"""Render a search space as one target sees it, for `dualtune space show FILE --target T`."""

from __future__ import annotations

import json

from search_spaces.errors import SpaceError
from search_spaces.model import SearchSpace

TARGETS = ("keras-tuner", "vertex")


def show(space: SearchSpace, target: str) -> str:
    """JSON (indent 2) of what `target` receives: for "vertex" the StudySpec as the REST API gets
    it; for "keras-tuner" HyperParameters.get_config() (each hyperparameter's class and config)."""
    if target == "vertex":
        from search_spaces.vertex_compiler import study_spec_json

        return json.dumps(study_spec_json(space), indent=2)
    if target in ("keras-tuner", "keras_tuner"):
        from search_spaces.keras_tuner_compiler import to_hyperparameters

        return json.dumps(to_hyperparameters(space).get_config(), indent=2)
    raise SpaceError(f"--target: unknown target {target!r}; use keras-tuner or vertex")
