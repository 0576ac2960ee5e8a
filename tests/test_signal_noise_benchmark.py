"""benchmarks/signal_noise.py's arithmetic: what docs/benchmarks.md's signal-and-noise table (and
so flights.yaml's tuning budget) is computed with; and one tiny real run of the script."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "signal_noise.py"


@pytest.fixture(scope="module")
def sn():
    spec = importlib.util.spec_from_file_location("signal_noise", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["signal_noise"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:  # the module put its own folder first on sys.path (it runs as a script)
        sys.path.remove(str(SCRIPT.parent))
        sys.modules.pop("signal_noise", None)
        sys.modules.pop("_common", None)


def test_noise_is_the_within_configuration_sd_pooled_by_degrees_of_freedom(sn):
    # Deviations from each mean: (-1, 1) and (-2, 0, 2): squares 2 + 8 over 1 + 2 dof.
    assert sn.pooled_sd([[1.0, 3.0], [4.0, 6.0, 8.0]]) == pytest.approx(math.sqrt(10 / 3))
    assert sn.pooled_sd([[1.0, 3.0], [5.0]]) == pytest.approx(math.sqrt(2))  # one run: no dof
    with pytest.raises(ValueError, match="at least two values"):
        sn.pooled_sd([[1.0], [2.0]])


def test_signal_is_the_sd_of_config_means_and_the_ratio_divides_by_the_noise(sn):
    drawn = [[1.0, 3.0], [5.0, 7.0], [9.0, 11.0]]  # means 2, 6, 10; every sd sqrt(2)
    guess = [0.0, 2.0, 4.0]  # sd 2: pooled with the drawn, (3 * 2 + 8) / (3 + 2) dof
    result = sn.signal_noise(drawn, [guess])
    assert result.signal == pytest.approx(statistics.stdev([2.0, 6.0, 10.0]))  # 4
    assert result.noise == pytest.approx(math.sqrt(14 / 5))
    assert result.ratio == pytest.approx(4 / math.sqrt(14 / 5))
    # The noise's share of var(means) is noise^2 / 2 (two seeds a config): 16 - 1.4.
    assert result.true_signal == pytest.approx(math.sqrt(16 - 14 / 5 / 2))
    assert result.configs == 3


def test_a_spread_inside_the_noise_leaves_no_true_signal(sn):
    result = sn.signal_noise([[1.0, 3.0], [1.5, 2.5]])  # means 2, 2: nothing between them
    assert result.signal == 0 and result.true_signal == 0 and result.ratio == 0
    with pytest.raises(ValueError, match="two configurations"):
        sn.signal_noise([[1.0, 2.0]])


def test_the_top_half_keeps_the_better_configurations_only(sn):
    drawn = [[20.0, 22.0], [1.0, 3.0], [50.0, 60.0], [2.0, 4.0]]  # means 21, 2, 55, 3
    top = sn.top_half(drawn)  # the means 2 and 3: the slow learners' spread left out
    assert top.configs == 2
    assert top.signal == pytest.approx(statistics.stdev([2.0, 3.0]))
    assert top.noise == pytest.approx(math.sqrt(2))


def test_spearman_ranks_with_ties(sn):
    assert sn.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1)
    assert sn.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
    assert sn._ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert sn.spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="equally long"):
        sn.spearman([1, 2], [1])


def test_rmse_and_the_budget_label(sn):
    assert sn.rmse([0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]) == pytest.approx(math.sqrt(0.5))
    assert sn.Budget.parse("20000x3") == sn.Budget(20000, 3)
    assert sn.Budget(20000, 3).label == "20000x3"


def test_the_drawn_configurations_are_fixed_and_inside_the_space(sn):
    first, again = sn.draw_configs(4, seed=0), sn.draw_configs(4, seed=0)
    assert first == again and sn.draw_configs(2, seed=0) == first[:2]
    space = {p.name: p for p in sn._common.flights_space().parameters}
    for params in first:
        assert set(params) == set(space)
        assert all(space[name].allows(value) for name, value in params.items()), params


@pytest.mark.slow
def test_a_tiny_real_run_saves_every_run_and_reports(sn, flights_data, tmp_path):
    saved = tmp_path / "sn.json"
    argv = [sys.executable, str(SCRIPT), "--budgets=1000x1", "--configs=2", "--default-seeds=2",
            "--config-seeds=2", "--eval-sizes=300,5000", f"--json={saved}"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(saved.read_text())["runs"]
    assert [(r["config"], r["seed"]) for r in runs] == [
        ("guess", 1), ("guess", 2), ("c1", 1), ("c1", 2), ("c2", 1), ("c2", 2)
    ]  # fmt: skip
    assert all(r["status"] == 0 and 0 < r["scores"]["300"] < 1 for r in runs)
    assert "s/n top half" in done.stdout and "1000x1" in done.stdout
    assert "largest difference" in done.stdout  # the trainer's val_rmse checked against ours
