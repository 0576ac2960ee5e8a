"""Keras Tuner's suggestions, kept inside the search space before a trial starts.

Keras Tuner 1.4.8 can suggest a value its own space excludes: Int.prob_to_value(1.0) is max + 1
on a log or reverse_log scale without step, and the Bayesian oracle's optimiser reaches that
bound; its Float arithmetic misses a bound by a few ulps; its grid walks a log-stepped Int as
floats. Vertex never sends such values, so the local backend maps them back
(search_spaces.membership.into_space) and tells the oracle: the trial's hyperparameters in the
oracle become the values the trial runs with, so its trial.json, its duplicate check and its
Gaussian process all see what actually ran. A value that cannot be mapped raises OutOfSpace.
"""

from __future__ import annotations

import logging
from typing import Any

from backends.local.oracles import split_values
from search_spaces.membership import DROP, OutOfSpace, Violation, into_space
from search_spaces.model import SearchSpace

log = logging.getLogger(__name__)


def admit(oracle: Any, trial: Any, space: SearchSpace) -> tuple[dict[str, Any], str]:
    """The values `trial` runs with (tuner keys left out) and a note of what was mapped ('' when
    nothing was). Changes the oracle's record of the trial to match; raises OutOfSpace."""
    hps = trial.hyperparameters
    values, _ = split_values(hps.values)
    mapped, changes = into_space(space, values)
    if not changes:
        return mapped, ""
    for change in changes:
        if change.fix is DROP:
            del hps.values[change.parameter]
        else:
            hps.values[change.parameter] = change.fix
    oracle._record_values(trial)  # the duplicate check hashes the values the trial runs with
    oracle._save_trial(trial)  # trial.json, so a resumed study reloads the mapped values
    oracle.save()
    note = "; ".join(_describe(c) for c in changes)
    log.info("trial %s: mapped into the search space: %s", trial.trial_id, note)
    return mapped, note


def suggested(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """The trial's values for the space's parameters as the oracle holds them, uncast (a value
    outside the space may not cast): what a trial refused before it started is reported with."""
    values, _ = split_values(trial.hyperparameters.values)
    return {k: v for k, v in values.items() if k in space.names}


def recorded(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """The values a trial of a reloaded oracle ran (or will run) with, cast: mapped again where a
    study older than this check saved Keras Tuner's value, as suggested where it was refused."""
    values, _ = split_values(trial.hyperparameters.values)
    try:
        return space.cast_values(into_space(space, values)[0])
    except OutOfSpace:
        return suggested(trial, space)


def _describe(change: Violation) -> str:
    if change.fix is DROP:
        return f"{change.parameter} left out ({change.problem})"
    return f"{change.parameter} {change.value!r} -> {change.fix!r} ({change.problem})"
