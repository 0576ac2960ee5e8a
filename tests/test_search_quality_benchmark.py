"""benchmarks/search_quality.py's arithmetic and merging: what docs/benchmarks.md's search-quality
table is computed with. The searches themselves are the real oracles, run here at a tiny budget."""

from __future__ import annotations

import importlib.util
import json
import sys
from argparse import Namespace

import pytest

from search_spaces.membership import violations
from tests.conftest import REPO


@pytest.fixture(scope="module")
def sq():
    path = REPO / "benchmarks" / "search_quality.py"
    spec = importlib.util.spec_from_file_location("search_quality", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_quality"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:  # the module put its own folder first on sys.path (it runs as a script)
        sys.path.remove(str(path.parent))
        sys.modules.pop("search_quality", None)
        sys.modules.pop("_common", None)


def test_regret_is_best_so_far_minus_the_minimum(sq):
    assert sq.best_so_far([5.0, 7.0, 3.0, 4.0], 1.0) == [4.0, 4.0, 2.0, 2.0]


def test_the_half_budget_count_and_the_median_run(sq):
    curves = [[3, 2, 1, 1], [3, 3, 3, 3], [2, 1, 1, 0]]
    assert sq.runs_reaching(curves, 1, 2) == "1/3"  # only the third is at 1 by trial 2
    assert sq.runs_reaching(curves, 1, 4) == "2/3"
    assert sq.trials_to_reach(curves, 1) == "3"  # firsts 3, never, 2: the lower median is 3
    assert sq.trials_to_reach([[3, 3], [3, 2]], 1) == ">2"


def test_a_seed_run_twice_keeps_its_longer_run_and_a_different_one_is_refused(sq, tmp_path):
    short = {"branin_mixed": {"vizier": [{"values": [3.0, 2.0]}, {"values": [9.0, 8.0]}]}}
    long = {"branin_mixed": {"vizier": [{"seed": sq.SEED_STRIDE, "values": [3.0, 2.0, 1.0]}]}}
    (tmp_path / "a.json").write_text(json.dumps(short))
    (tmp_path / "b.json").write_text(json.dumps(long))
    merged = sq.merge_saved([tmp_path / "a.json", tmp_path / "b.json"])
    assert [r["values"] for r in merged["branin_mixed"]["vizier"]] == [[3.0, 2.0, 1.0], [9.0, 8.0]]
    long["branin_mixed"]["vizier"][0]["values"] = [3.0, 2.5, 1.0]
    (tmp_path / "b.json").write_text(json.dumps(long))
    with pytest.raises(SystemExit, match="seed 10007 differs"):
        sq.merge_saved([tmp_path / "a.json", tmp_path / "b.json"])


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_a_search_scores_the_points_the_oracle_suggested_inside_the_space(sq, algorithm):
    fn = sq.FUNCTIONS["branin_mixed"]
    args = Namespace(kt_initial=None, kt_beta=None)
    run = sq.search_oracle(fn, algorithm, sq.SEED_STRIDE, 5, args)
    assert len(run["values"]) == len(run["points"]) == 5
    for point, value in zip(run["points"], run["values"], strict=True):
        assert violations(fn.space, point) == (), point
        assert value == fn(point) >= fn.minimum
