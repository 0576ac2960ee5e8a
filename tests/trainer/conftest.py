"""Fixtures for the trainer tests: small slices of the embedded data (session-scoped)."""

from __future__ import annotations

from pathlib import Path

import pytest

SLICE_ROWS = {"train": 5000, "eval": 1500, "test": 1500}


@pytest.fixture(scope="session")
def small_data(flights_data, tmp_path_factory) -> dict[str, Path]:
    """The first rows of each embedded split, as CSVs with the full header."""
    directory = tmp_path_factory.mktemp("flights-small")
    paths = {}
    for split, rows in SLICE_ROWS.items():
        lines = flights_data[split].read_text().splitlines(keepends=True)[: rows + 1]
        paths[split] = directory / f"{split}.csv"
        paths[split].write_text("".join(lines))
    return paths
