"""The trainer's seed flag and the trust section: defaults, switches, and one-line refusals."""

from __future__ import annotations

import re

import pytest

from search_spaces.loader import load_space_text
from search_spaces.model import Baseline, Confirm, Parameter, SearchSpace, Trainer, Trust
from trialkit.errors import SpaceError

MINIMAL = """
metric: {tag: val_rmse, goal: minimize}
parameters:
  learning_rate: {type: double, min: 1e-4, max: 1e-2, scale: log}
"""


def load(extra: str = "") -> SearchSpace:
    return load_space_text(MINIMAL + extra, source="space.yaml")


def test_defaults_are_on_and_cheap():
    """No trust section: a 2-run baseline, the top 3 confirmed at 2 seeds, one execution."""
    trust = load().trust
    assert trust == Trust(Baseline(repeats=2), Confirm(top=3, repeats=2), executions_per_trial=1)
    assert (trust.baseline.runs, trust.confirm.runs) == (2, 6)
    assert load().trainer.seed_flag is None


def test_flights_names_its_seed_flag_and_the_defaults(flights):
    assert flights.trainer.seed_flag == "--seed"
    assert flights.trainer.seed_args(7) == ("--seed=7",)
    assert flights.trust == Trust()


def test_seed_args_without_a_seed_flag_are_plain_re_runs():
    assert Trainer().seed_args(7) == ()
    assert Trainer(seed_flag="--random-seed").seed_args(3) == ("--random-seed=3",)


def test_sections_set_counts_and_switch_off():
    trust = load(
        "trust:\n  baseline: {repeats: 5}\n  confirm: {top: 1, repeats: 3}\n"
        "  executions_per_trial: 2\n"
    ).trust
    assert trust == Trust(Baseline(repeats=5), Confirm(top=1, repeats=3), executions_per_trial=2)
    off = load("trust: {baseline: false, confirm: false}\n").trust
    assert (off.baseline.enabled, off.baseline.runs) == (False, 0)
    assert (off.confirm.enabled, off.confirm.runs) == (False, 0)
    assert load("trust: {baseline: true, confirm: {top: 2}}\n").trust == Trust(
        confirm=Confirm(top=2)
    )


BAD = {
    "trust:\n  baseline: {repeats: 0}\n": (
        "trust.baseline.repeats: must be a whole number >= 1 (got 0); "
        "use e.g. 2, or baseline: false to turn it off"
    ),
    "trust:\n  baseline: {repeats: 1.5}\n": "trust.baseline.repeats: must be a whole number",
    "trust:\n  baseline: {repeats: true}\n": "trust.baseline.repeats: must be a whole number",
    "trust:\n  baseline: 3\n": (
        "trust.baseline: must be a mapping or true/false (got 3); write e.g. baseline: "
        "{repeats: 2}, or false to turn it off"
    ),
    "trust:\n  baseline: {repeat: 2}\n": "trust.baseline.repeat: unknown key (did you mean",
    "trust:\n  confirm: {top: 0}\n": "trust.confirm.top: must be a whole number >= 1 (got 0)",
    "trust:\n  confirm: {repeats: -1}\n": "trust.confirm.repeats: must be a whole number >= 1",
    "trust:\n  confirm: {top: '3'}\n": "trust.confirm.top: must be a whole number >= 1 (got '3')",
    "trust:\n  executions_per_trial: 0\n": (
        "trust.executions_per_trial: must be a whole number >= 1 (got 0); use 1"
    ),
    "trust:\n  executions_per_trial: 2.0\n": "trust.executions_per_trial: must be a whole",
    "trust:\n  excutions_per_trial: 2\n": "trust.excutions_per_trial: unknown key (did you mean",
    "trust: [baseline]\n": "trust: must be a mapping (got a list)",
    "trainer: {module: trainer.task, seed_flag: seed}\n": (
        "trainer.seed_flag: must be a --flag name (got 'seed', a string); write the trainer's"
    ),
    "trainer: {module: trainer.task, seed_flag: --seed=3}\n": "trainer.seed_flag: must be a",
    "trainer: {module: trainer.task, seed_flag: 42}\n": "trainer.seed_flag: must be a --flag",
    "trainer: {module: trainer.task, seed_flag: --seed, tuning_args: [--seed=1]}\n": (
        "trainer.tuning_args: '--seed=1' sets the seed_flag --seed"
    ),
    "trainer: {module: trainer.task, seed_flag: --learning_rate}\n": (
        "parameters.learning_rate: is the trainer's seed_flag --learning_rate"
    ),
}


@pytest.mark.parametrize("extra", list(BAD))
def test_bad_values_fail_in_one_line_naming_file_field_and_fix(extra):
    with pytest.raises(SpaceError, match=re.escape("space.yaml: " + BAD[extra])) as info:
        load(extra)
    assert "\n" not in str(info.value) and ";" in str(info.value)


def test_the_model_refuses_what_the_loader_would():
    """A notebook building values in Python meets the same rules."""
    with pytest.raises(SpaceError, match=r"trust.baseline.repeats: .*\(got 0\)"):
        Baseline(repeats=0)
    with pytest.raises(SpaceError, match=r"trust.confirm: enabled must be true or false"):
        Confirm(enabled="no")
    with pytest.raises(SpaceError, match=r"trust.executions_per_trial: .*\(got -2\)"):
        Trust(executions_per_trial=-2)
    with pytest.raises(SpaceError, match=r"trust.baseline: must be a Baseline"):
        Trust(baseline=2)
    lr = Parameter("seed", "fixed", value=42)
    with pytest.raises(SpaceError, match=r"parameters.seed: is the trainer's seed_flag --seed"):
        SearchSpace("s", (lr,), trainer=Trainer(seed_flag="--seed"))
