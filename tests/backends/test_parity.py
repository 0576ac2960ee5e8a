"""Both backends, one behaviour: the same space file gives the same parameters to both search
algorithms, and both backends emit the same event stream for one study (every other case of the
backend contract is in test_contract.py, run on every registry entry).

Parameters are read where each backend really hands them over: the local backend's Keras Tuner
oracle (its HyperParameters) and the HyperparameterTuningJob request the emulator received,
read back with a plain GET.
"""

from __future__ import annotations

import dataclasses
import json
import math
import urllib.request
from pathlib import Path

import pytest

from backends.base import (
    COMPLETED,
    Measured,
    StudyEnded,
    StudyRequest,
    StudyStarted,
    TrialEnded,
    TrialStarted,
)
from search_spaces.loader import load_space
from search_spaces.model import SearchSpace, Trainer
from search_spaces.vertex_compiler import flag_text
from tests.backends import test_vertex
from tests.conftest import FIXTURES, REPO, TOY_TRAINER

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.filterwarnings(r"ignore:(currentThread|getName)\(\) is deprecated"),
]

# The vertex tests' fixtures (one emulator for the whole session) and backend factory.
emulator, vertex_env = test_vertex.emulator, test_vertex.vertex_env
make_backend = test_vertex.make_backend

SPACES = [REPO / "search_spaces" / "flights.yaml", FIXTURES / "toy.yaml"]
SCALES = {
    "UNIT_LINEAR_SCALE": "linear",
    "UNIT_LOG_SCALE": "log",
    "UNIT_REVERSE_LOG_SCALE": "reverse_log",
}


# -- parameters, normalised: name -> (kind, low, high, scale, values, condition) -------------------
def keras_tuner_view(hp) -> dict[str, tuple]:
    view = {}
    for h in hp.space:
        kind = type(h).__name__
        condition = tuple((c.name, tuple(map(flag_text, c.values))) for c in h.conditions)
        if kind in ("Int", "Float"):
            assert h.step in (None, 1) if kind == "Int" else h.step is None, "stepped: extend me"
            cast = int if kind == "Int" else float
            entry = ("integer" if kind == "Int" else "double", cast(h.min_value), cast(h.max_value),
                     h.sampling or "linear", ())  # fmt: skip
        elif kind == "Choice" and isinstance(h.values[0], str):
            entry = ("categorical", None, None, None, tuple(h.values))
        elif kind == "Choice":
            entry = ("discrete", None, None, None, tuple(float(v) for v in h.values))
        elif kind == "Boolean":
            entry = ("categorical", None, None, None, ("false", "true"))
        else:  # Fixed
            entry = ("categorical", None, None, None, (flag_text(h.value),))
        view[h.name] = (*entry, condition)
    return view


def vertex_view(specs: list[dict], condition: tuple = ()) -> dict[str, tuple]:
    view = {}
    for spec in specs:
        name, scale = spec["parameterId"], SCALES.get(spec.get("scaleType"))
        if "integerValueSpec" in spec:
            bounds = spec["integerValueSpec"]  # int64 as strings; a zero is omitted
            entry = ("integer", int(bounds.get("minValue", 0)), int(bounds.get("maxValue", 0)),
                     scale, ())  # fmt: skip
        elif "doubleValueSpec" in spec:
            bounds = spec["doubleValueSpec"]
            entry = ("double", float(bounds.get("minValue", 0.0)),
                     float(bounds.get("maxValue", 0.0)), scale, ())  # fmt: skip
        elif "categoricalValueSpec" in spec:
            entry = ("categorical", None, None, None, tuple(spec["categoricalValueSpec"]["values"]))
        else:
            values = tuple(float(v) for v in spec["discreteValueSpec"]["values"])
            entry = ("discrete", None, None, None, values)
        view[name] = (*entry, condition)
        for child in spec.get("conditionalParameterSpecs", []):
            parents = next(v for k, v in child.items() if k.startswith("parent"))["values"]
            parent_values = tuple(flag_text(v) if isinstance(v, str) else _text(v) for v in parents)
            view.update(vertex_view([child["parameterSpec"]], (*condition, (name, parent_values))))
    return view


def _text(value) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


def local_parameters(space: SearchSpace, workdir: Path) -> dict[str, tuple]:
    from backends.local.oracles import build_oracle

    oracle = build_oracle(space, space.algorithm, space.budget.max_trials, 1, workdir)
    return keras_tuner_view(oracle.hyperparameters)


def submitted_parameters(em, space: SearchSpace, workdir: Path) -> dict[str, tuple]:
    """Submit the space's job (a no-op trainer: only the parameters matter), GET it, cancel it."""
    noop = workdir / "noop.py"
    noop.write_text("")
    space = dataclasses.replace(space, trainer=Trainer(script=str(noop)))
    backend = make_backend(em)
    name = backend.submit(StudyRequest(f"parity-{space.name}", space, workdir), lambda e: None)
    with urllib.request.urlopen(
        urllib.request.Request(f"{em.url}/v1/{name}", headers=em.headers()), timeout=10
    ) as answer:
        job = json.loads(answer.read())
    backend.session.api().cancel_tuning_job(name)
    return vertex_view(job["studySpec"]["parameters"])


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_one_space_file_gives_both_backends_the_same_parameters(vertex_env, isolated, path):
    space = load_space(path)
    local = local_parameters(space, isolated / "oracle")
    vertex = submitted_parameters(vertex_env, space, isolated)
    assert list(local) == list(vertex) == list(space.names)
    assert local == vertex
    if path.name == "flights.yaml":
        assert local["train_batch_size"] == ("integer", 16, 256, "log", (), ())
        assert local["learning_rate"] == ("double", 1e-4, 1e-2, "log", (), ())


# -- the event contract, on each backend ----------------------------------------------------------
def contract_space() -> SearchSpace:
    space = load_space(FIXTURES / "toy.yaml")
    budget = dataclasses.replace(space.budget, max_trials=2, parallel_trials=2)
    trainer = dataclasses.replace(space.trainer, script=str(TOY_TRAINER))
    return dataclasses.replace(space, budget=budget, trainer=trainer)


def run_on(backend_name: str, em, workdir: Path) -> tuple[StudyEnded, list]:
    events: list = []
    space = contract_space()
    request = StudyRequest(f"contract-{backend_name}", space, workdir, ("--num_epochs=2",))
    if backend_name == "local":
        from backends.local.backend import LocalBackend
        from backends.local.settings import LocalSettings

        backend = LocalBackend(LocalSettings(seed=1, prewarm=False))
        return backend.run(request, events.append), events
    return make_backend(em).run(request, events.append), events


@pytest.mark.parametrize("backend_name", ["local", "vertex"])
def test_both_backends_emit_the_same_event_contract(vertex_env, isolated, backend_name):
    ended, events = run_on(backend_name, vertex_env, isolated / "study")
    assert isinstance(events[0], StudyStarted) and events[-1] == ended
    assert ended.status == COMPLETED
    space = events[0].space
    started = [e for e in events if isinstance(e, TrialStarted)]
    assert len(started) == 2 and [s.number for s in started] == [1, 2]
    finals = {}
    for trial in started:
        assert set(trial.params) == set(space.names)
        for name, value in trial.params.items():
            assert type(value) is space.parameter(name).python_type()
        mine = [e for e in events if getattr(e, "trial_id", None) == trial.trial_id]
        assert mine[0] is trial and isinstance(mine[-1], TrialEnded)
        values = [e.value for e in mine if isinstance(e, Measured)]
        assert [e.step for e in mine if isinstance(e, Measured)] == [1, 2]
        assert mine[-1].status == COMPLETED and math.isclose(mine[-1].final_value, min(values))
        finals[trial.trial_id] = mine[-1].final_value
    assert ended.best_trial_id == min(finals, key=finals.get)
    assert ended.best_value == min(finals.values())
