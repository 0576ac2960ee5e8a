"""`--algorithm vizier`: Open Source Vizier's designer behind a Keras Tuner oracle.

Real Gaussian-process suggestions cost seconds each (tens on a loaded 2-core machine): the
slow tests here make one or two; everything else checks the conversions and the missing-extra
path without importing Vizier.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from backends.local.oracles import check_algorithm_available
from backends.local.vizier_oracle import active_values, dimensions, flat_point
from search_spaces.loader import load_space
from search_spaces.model import Condition, Parameter, SearchSpace
from search_spaces.vertex_compiler import search_algorithm
from tests.conftest import FIXTURES, REPO, dualtune_argv
from trialkit.vizier_designer import Dim, available

needs_vizier = pytest.mark.skipif(not available(), reason="the vizier extra is not installed")


def mixed_space() -> SearchSpace:
    P = Parameter
    return SearchSpace(
        name="mixed",
        parameters=(
            P("x", "double", min=0.0, max=1.0),
            P("units", "integer", min=4, max=16, scale="log"),
            P("opt", "categorical", values=("adam", "sgd")),
            P(
                "lr",
                "double",
                min=1e-4,
                max=1e-1,
                scale="log",
                condition=Condition("opt", ("adam",)),
            ),
            P("flag", "boolean"),
            P("d", "discrete", values=(1, 2, 4)),
            P("s", "integer", min=0, max=10, step=2),
            P("seed", "fixed", value=42),
        ),
    )


def blocked_env(tmp_path: Path) -> dict[str, str]:
    """A child environment in which `import vizier` fails, as without the extra: a
    sitecustomize that marks the module absent (sys.modules[name] = None)."""
    import os

    blocker = tmp_path / "no-vizier"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['vizier'] = None\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), str(REPO)])
    return env


# -- conversions (no Vizier needed) -----------------------------------------------------------


def test_conditions_are_flattened_and_types_follow_the_space():
    dims = {d.name: d for d in dimensions(mixed_space())}
    assert "seed" not in dims  # fixed: not searched
    assert dims["lr"] == Dim("lr", "double", 1e-4, 1e-1, scale="log")  # a child, always present
    assert dims["flag"] == Dim("flag", "categorical", values=("false", "true"))
    assert dims["s"] == Dim("s", "discrete", values=(0, 2, 4, 6, 8, 10))  # stepped: DISCRETE
    assert dims["units"] == Dim("units", "integer", 4, 16, scale="log")


def test_each_dimension_has_the_type_vertex_compiles_it_to():
    # A linear integer with step 1 is Vertex's INTEGER, not a DISCRETE set of every value.
    space = dataclasses.replace(
        mixed_space(), parameters=(Parameter("n", "integer", min=1, max=5, step=1),)
    )
    assert dimensions(space) == [Dim("n", "integer", 1, 5)]


def test_inactive_children_are_dropped_and_values_cast():
    point = {"x": 0.5, "units": 8, "opt": "sgd", "lr": 0.01, "flag": "true", "d": 4.0, "s": 6.0}
    values = active_values(mixed_space(), point)
    assert values == {"x": 0.5, "units": 8, "opt": "sgd", "flag": True, "d": 4, "s": 6, "seed": 42}
    assert type(values["d"]) is int and type(values["s"]) is int
    assert active_values(mixed_space(), {**point, "opt": "adam"})["lr"] == 0.01


def test_a_trial_saved_without_its_flat_point_gets_placeholders_for_inactive_children():
    class Saved:
        values = {"x": 0.5, "units": 8, "opt": "sgd", "flag": False, "d": 2, "s": 4, "seed": 42}

    point = flat_point(mixed_space(), Saved())
    assert point["lr"] == 1e-4 and point["flag"] == "false" and "seed" not in point


def test_vizier_on_vertex_is_the_service_default_algorithm():
    space = dataclasses.replace(load_space(FIXTURES / "toy.yaml"), algorithm="vizier")
    assert search_algorithm(space) is None  # ALGORITHM_UNSPECIFIED: Vizier's own GP-UCB-PE


def test_other_algorithms_need_no_extra():
    for algorithm in ("bayesian", "random", "grid", "hyperband"):
        check_algorithm_available(algorithm)  # raises nothing, imports nothing heavy


# -- without the extra ------------------------------------------------------------------------


def test_without_the_extra_algorithm_vizier_is_one_line_exit_2_and_nothing_created(tmp_path):
    argv = dualtune_argv(
        "tune", "--backend", "local", "--algorithm", "vizier", "--space", str(FIXTURES / "toy.yaml")
    )
    argv += ["--study", "no-vizier", "--max-trials", "1"]
    done = subprocess.run(
        argv, cwd=tmp_path, env=blocked_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "--algorithm vizier" in lines[0] and "pip install -e '.[vizier]'" in lines[0]
    assert not (tmp_path / "studies").exists()
    store = tmp_path / "mlruns"  # the tracking URI is checked first; an empty store holds nothing
    assert not store.exists() or not any(store.iterdir())


def test_without_the_extra_the_emulator_says_it_serves_keras_tuners_gp(tmp_path):
    code = (
        "from vertex_emulator.suggest import bayesian_designer\n"
        "print(bayesian_designer())\n"
        "try:\n    bayesian_designer('vizier')\n"
        "except ValueError as e:\n    print('refused:', e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=blocked_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    said, refused = done.stdout.splitlines()
    assert said.startswith("Keras Tuner's Gaussian process") and "not Vizier" in said
    assert "pip install -e '.[vizier]'" in said
    assert refused.startswith("refused: bayesian='vizier': Open Source Vizier is not installed")


def test_the_compilation_cache_lives_in_the_users_cache_folder_unless_jax_is_told(monkeypatch):
    from trialkit.vizier_designer import compilation_cache_dir

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/cache")
    assert compilation_cache_dir() == "/somewhere/cache/dualtune/jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compilation_cache_dir() == str(Path.home() / ".cache" / "dualtune" / "jax")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/mine")
    assert compilation_cache_dir() == "/mine"


# -- with the extra: real GP suggestions (slow) -----------------------------------------------


@needs_vizier
@pytest.mark.slow
def test_a_reloaded_oracle_refeeds_its_designer(tmp_path):
    from backends.local.oracles import build_oracle

    space = mixed_space()
    oracle = build_oracle(space, "vizier", 5, 1, tmp_path)
    trial = oracle.create_trial("slot-0")  # the designer's first point: the centre, no GP fit
    values = trial.hyperparameters.values
    assert set(values) == set(active_values(space, oracle.flat[trial.trial_id]))
    oracle.update_trial(trial.trial_id, {"val_rmse": 0.25})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)

    reloaded = build_oracle(space, "vizier", 5, 1, tmp_path)
    assert reloaded.flat == oracle.flat
    designer = reloaded._ensure_designer()._designer
    completed = designer._all_completed_trials
    assert len(completed) == 1
    assert completed[0].final_measurement.metrics["objective"].value == 0.25


@needs_vizier
@pytest.mark.slow
def test_algorithm_vizier_runs_a_short_local_study(isolated, monkeypatch):
    cache = isolated / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    done = subprocess.run(
        dualtune_argv(
            "tune",
            "--backend",
            "local",
            "--algorithm",
            "vizier",
            "--space",
            str(FIXTURES / "toy.yaml"),
            "--study",
            "viz",
            "--max-trials",
            "2",
            "--parallel-trials",
            "1",
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listing = subprocess.run(
        dualtune_argv("trials", "--study", "viz"), capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0, listing.stderr
    rows = [line for line in listing.stdout.splitlines() if "COMPLETED" in line]
    assert len(rows) == 2, listing.stdout
    study = (isolated / "studies" / "viz" / "study.json").read_text()
    assert '"algorithm": "vizier"' in study
    # The second suggestion fitted the GP: its compiled functions were kept for the next ones.
    compiled = list((cache / "dualtune" / "jax").iterdir())
    assert compiled, "no compiled GP function was cached"
