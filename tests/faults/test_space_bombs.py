"""Space files that would hang: a YAML alias bomb and a huge categorical list, as real files
through the real CLI (`dualtune space show`) and the loader."""

from __future__ import annotations

import subprocess
import time

import pytest

from search_spaces.loader import load_space
from tests.conftest import dualtune_argv
from trialkit.errors import SpaceError

LEVELS = "abcdefghij"


def alias_bomb(levels: int = 10) -> str:
    """Nested anchors, each list nine aliases of the one before: 9**levels strings once spelled
    out (3.5 billion), from under 700 bytes of YAML."""
    inner = '["x","x","x","x","x","x","x","x","x"]'
    for name in LEVELS[:levels]:
        inner = f"[&{name} {inner}" + f",*{name}" * 8 + "]"
    return (
        "metric: {tag: val_rmse, goal: minimize}\n"
        "parameters:\n"
        "  p:\n"
        "    type: categorical\n"
        f"    values: &top {inner}\n"
        "    default: *top\n"
    )


def test_alias_bomb_is_refused_at_once_in_one_line(tmp_path):
    space = tmp_path / "bomb.yaml"
    space.write_text(alias_bomb())
    assert space.stat().st_size < 700
    started = time.monotonic()
    done = subprocess.run(
        dualtune_argv("space", "show", str(space)), capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - started < 30  # an interpreter start; before: minutes and 7 GB
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert str(space) in lines[0] and "aliases that expand to more than" in lines[0]


def test_an_alias_that_contains_itself_is_refused(tmp_path):
    space = tmp_path / "loop.yaml"
    space.write_text(
        "metric: {tag: val_rmse, goal: minimize}\n"
        "parameters:\n"
        "  p: {type: categorical, values: &v [a, *v]}\n"
    )
    with pytest.raises(SpaceError, match=r"loop.yaml:3: an alias that contains itself"):
        load_space(space)


def test_a_few_ordinary_aliases_still_load(tmp_path):
    space = tmp_path / "ok.yaml"
    space.write_text(
        "metric: {tag: val_rmse, goal: minimize}\n"
        "parameters:\n"
        "  a: {type: categorical, values: &opts [adam, sgd]}\n"
        "  b: {type: categorical, values: *opts}\n"
    )
    loaded = load_space(space)
    assert [p.values for p in loaded.parameters] == [("adam", "sgd"), ("adam", "sgd")]


def write_categorical(path, count: int, duplicate: bool) -> None:
    values = [f"v{i}" for i in range(count)] + (["v7"] if duplicate else [])
    path.write_text(
        "metric: {tag: val_rmse, goal: minimize}\n"
        "parameters:\n"
        f"  p: {{type: categorical, values: [{', '.join(values)}]}}\n"
    )


def test_duplicate_check_of_100k_categorical_values_is_linear(tmp_path):
    space = tmp_path / "many.yaml"
    write_categorical(space, 100_000, duplicate=True)
    from search_spaces.loader import _parse
    from search_spaces.model import Parameter

    data = _parse(space.read_text(), str(space))  # YAML parsing itself is not under test
    values = data["parameters"]["p"]["values"]
    started = time.monotonic()
    with pytest.raises(SpaceError, match=r"duplicate value 'v7'"):
        Parameter(name="p", type="categorical", values=tuple(values))
    assert time.monotonic() - started < 0.5  # before: quadratic, 100k values never answered
    start = time.monotonic()
    with pytest.raises(SpaceError, match=r"many.yaml: parameters.p.values: duplicate value 'v7'"):
        load_space(space)
    assert time.monotonic() - start < 60  # the whole file through PyYAML's pure-Python reader
