"""Paths and the golden-file check for the search-space tests.

Regenerate golden files with: UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/search_spaces
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture
def golden():
    """check(file_name, json_text): compare with tests/search_spaces/golden/<file_name>, or
    rewrite it when UPDATE_GOLDEN=1."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.write_text(text + "\n", encoding="utf-8")
            return
        assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 to create it"
        assert json.loads(text) == json.loads(path.read_text(encoding="utf-8")), (
            f"{name} changed: review the diff, then regenerate with UPDATE_GOLDEN=1"
        )

    return check


@pytest.fixture
def flights_path() -> Path:
    return Path(__file__).resolve().parents[2] / "search_spaces" / "flights.yaml"


@pytest.fixture
def all_types_path() -> Path:
    return GOLDEN / "all_types.yaml"


@pytest.fixture
def flights(flights_path):
    from search_spaces.loader import load_space

    return load_space(flights_path)


@pytest.fixture
def all_types(all_types_path):
    from search_spaces.loader import load_space

    return load_space(all_types_path)
