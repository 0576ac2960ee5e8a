"""Keras Tuner oracles, driven from outside: the search algorithm only suggests and records.

Running a trial is dualtune's job (a process per trial); the oracle sees create_trial,
update_trial(step) and end_trial, exactly as Keras Tuner's own Tuner would call them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from search_spaces.model import SearchSpace
from trialkit.atomic import write_json_atomic
from trialkit.errors import UserError

HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round")


def build_oracle(space: SearchSpace, algorithm: str, max_trials: int, seed: int, workdir: Path):
    """A Keras Tuner oracle for `space`, its state kept under `workdir` (reloaded if present)."""
    import keras_tuner as kt

    from search_spaces.keras_tuner_compiler import to_hyperparameters

    objective = kt.Objective(space.metric.tag, "min" if space.metric.minimize else "max")
    common: dict[str, Any] = dict(
        objective=objective,
        hyperparameters=to_hyperparameters(space),
        allow_new_entries=False,
        tune_new_entries=False,
        seed=seed,
        # dualtune counts failures itself (--max-failed-trials), never Keras Tuner.
        max_consecutive_failed_trials=10**9,
    )
    if algorithm == "bayesian":
        dims = len(space.parameters)
        # Keras Tuner's default (3 random points per dimension) would make a small budget all
        # random; keep a third of the budget for the Gaussian process to act on.
        initial = max(2, min(3 * dims, max_trials // 3))
        oracle = kt.oracles.BayesianOptimizationOracle(
            max_trials=max_trials, num_initial_points=initial, **common
        )
    elif algorithm == "random":
        oracle = kt.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    elif algorithm == "grid":
        oracle = kt.oracles.GridSearchOracle(max_trials=max_trials, **common)
    elif algorithm == "hyperband":
        oracle = kt.oracles.HyperbandOracle(max_epochs=space.hyperband_max_epochs, **common)
    elif algorithm == "vizier":
        check_algorithm_available(algorithm)
        from backends.local.vizier_oracle import VizierOracle

        oracle = VizierOracle(space, max_trials=max_trials, **common)
    else:  # the loader and the CLI reject this earlier; keep the message clear anyway
        raise ValueError(f"unknown algorithm {algorithm!r}")
    oracle.verbose = 0
    _make_saves_atomic(oracle)
    oracle._set_project_dir(str(workdir), "oracle")
    if (workdir / "oracle" / "oracle.json").exists():
        oracle.reload()
    return oracle


def check_algorithm_available(algorithm: str) -> None:
    """Refuse an algorithm whose optional extra is not installed, before any study exists."""
    if algorithm != "vizier":
        return
    from trialkit.vizier_designer import INSTALL_HINT, missing_modules

    missing = missing_modules()
    if missing:
        raise UserError(
            f"--algorithm vizier: Open Source Vizier is not installed (no module "
            f"{', '.join(missing)}); install the extra: {INSTALL_HINT}"
        )


def _make_saves_atomic(oracle: Any) -> None:
    """Keras Tuner writes oracle.json and trial.json in place: a kill -9 mid-write leaves an
    empty file that makes the study unresumable. Write each to a temporary file, then rename."""

    def save() -> None:
        write_json_atomic(oracle._get_oracle_fname(), oracle.get_state())

    def save_trial(trial: Any) -> None:
        write_json_atomic(
            os.path.join(oracle._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state()
        )

    oracle.save = save
    oracle._save_trial = save_trial


def split_values(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the user's hyperparameters from the tuner's own keys ('tuner/...')."""
    user = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    tuner = {k: v for k, v in values.items() if k.startswith("tuner/")}
    return user, tuner
