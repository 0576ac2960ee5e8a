"""trialkit/atomic.py: a file written whole or not at all, and no temporary file left behind
by a write that fails, wherever it fails."""

from __future__ import annotations

import json

import pytest

from trialkit.atomic import atomic_file, write_json_atomic


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "picture.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="drawing failed"):
        with atomic_file(target) as fh:
            fh.write(b"half a pic")
            raise RuntimeError("drawing failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["picture.png"]


def test_a_rename_that_fails_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "state.json"
    target.mkdir()  # the rename over it fails after the data was written and synced
    with pytest.raises(IsADirectoryError):
        write_json_atomic(target, {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_write_that_succeeds_replaces_the_file_whole(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("{}")
    write_json_atomic(target, {"a": 1}, indent=1)
    with atomic_file(tmp_path / "b.bin") as fh:
        fh.write(b"\x00\x01")
    assert json.loads(target.read_text()) == {"a": 1}
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "state.json"]
