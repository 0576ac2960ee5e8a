"""`dualtune space show FILE --target T` renders through search_spaces.show.show."""

from __future__ import annotations

import json

import pytest

from search_spaces.show import TARGETS, show
from trialkit.errors import SpaceError


def test_both_targets_render_json(flights):
    assert TARGETS == ("keras-tuner", "vertex")
    vertex = json.loads(show(flights, "vertex"))
    assert [p["parameterId"] for p in vertex["parameters"]] == list(flights.names)
    kt = json.loads(show(flights, "keras-tuner"))
    assert [h["config"]["name"] for h in kt["space"]] == list(flights.names)
    assert show(flights, "vertex").startswith('{\n  "metrics"')  # indent 2


def test_unknown_target(flights):
    with pytest.raises(SpaceError, match=r"^--target: unknown target 'sagemaker'; use keras-tuner"):
        show(flights, "sagemaker")
