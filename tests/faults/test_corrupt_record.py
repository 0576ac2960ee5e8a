"""A damaged studies/NAME/study.json: `tune --resume`, `finalize` and `trials` each answer one
line naming the file, what is wrong and the fix, with exit status 2 and no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import FIXTURES, dualtune_argv

pytestmark = pytest.mark.slow


def cli(*args: str, cwd):
    return subprocess.run(
        dualtune_argv(*args), capture_output=True, text=True, timeout=300, cwd=cwd
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A real one-trial toy study (its folder and store), made once and copied per test."""
    root = tmp_path_factory.mktemp("finished")
    done = cli(
        "tune", "--space", str(FIXTURES / "toy.yaml"), "--study", "s", "--max-trials", "1",
        cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root


def corruptions(good: bytes) -> dict[str, tuple[bytes, str]]:
    meta = json.loads(good)
    without_study = {k: v for k, v in meta.items() if k != "study"}
    return {
        "empty": (b"", "the study record is empty"),
        "truncated": (good[: len(good) // 2], "the study record is not valid JSON"),
        "binary": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 8, "the study record is not text"),
        "wrong shape": (b"[1, 2, 3]", "the study record is a JSON list, not an object"),
        "missing keys": (json.dumps(without_study).encode(), "has no 'study' field"),
        "wrong type": (
            json.dumps({**meta, "extra_args": "--x=1"}).encode(),
            "field 'extra_args' of the study record is a str",
        ),
        "unknown budget key": (
            json.dumps({**meta, "budget": {"max_trial": 3}}).encode(),
            "field 'budget' has unknown key 'max_trial'",
        ),
    }


KINDS = list(corruptions(b'{"study": "s"}'))


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_record_is_one_line_and_exit_2(kind, finished, isolated):
    shutil.copytree(finished / "studies", isolated / "studies")
    record = isolated / "studies" / "s" / "study.json"
    data, what = corruptions(record.read_bytes())[kind]
    record.write_bytes(data)
    before = sorted(p.name for p in (isolated / "studies").iterdir())
    for command in (["tune", "--resume", "--study", "s"], ["finalize"], ["trials"]):
        done = cli(*command, cwd=isolated)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (command, done.stderr)
        assert len(lines) == 1 and "Traceback" not in done.stderr, (command, done.stderr)
        assert "studies/s/study.json: " in lines[0] and what in lines[0], (command, lines[0])
        assert "restore it from a backup, or start a new study" in lines[0]
    assert sorted(p.name for p in (isolated / "studies").iterdir()) == before
    assert record.read_bytes() == data  # nothing rewrote it
