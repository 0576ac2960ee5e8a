"""The backend contract (backends/base.py), one suite run against every entry of the registry.

In the manner of Optuna's storage test suite (optuna/testing/storages.py): each case is written
once and parametrized over backends.registry.BACKENDS, so a third backend is tested by the same
cases the day it is registered. What differs per backend is only how a test reaches it (a
`Harness`: its settings, where a trial's files land, how to make its algorithm suggest a value
outside the space); a registered backend without a harness fails here, loudly.

Real components throughout: the local backend's Keras Tuner oracles and trial processes; the
vertex backend through the real aiplatform SDK over HTTP against the Vertex emulator; the toy
trainer (tests/fixtures/toy_trainer.py: no TensorFlow); a real MLflow store for resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from backends.base import (
    COMPLETED,
    FAILED,
    STOPPED,
    Backend,
    BackendSettings,
    FinalizeRequest,
    JobBackend,
    Measured,
    StudyEnded,
    StudyRequest,
    StudyStarted,
    TrialEnded,
    TrialStarted,
    best_of,
)
from backends.registry import BACKENDS
from search_spaces.loader import load_space
from search_spaces.model import EarlyStopping, Parameter, SearchSpace
from tests.backends import test_vertex
from tests.conftest import FIXTURES, TOY_TRAINER, mlflow_study_runs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    # Keras Tuner 1.4.8 (local oracles, the emulator's suggestions) uses deprecated names.
    pytest.mark.filterwarnings(r"ignore:(currentThread|getName)\(\) is deprecated"),
]

# One emulator and one MLflow store for the session, shared with the other vertex tests.
emulator, vertex_env, store = test_vertex.emulator, test_vertex.vertex_env, test_vertex.store

OUTSIDE = {"x": 0.5, "units": 300, "act": "relu"}  # units: 4..16


# -- how a test reaches each backend ---------------------------------------------------------
class LocalHarness:
    """The local backend: trials are processes under the study's workdir."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.settings = BACKENDS["local"].settings_type(seed=1, prewarm=False)

    def trial_dir(self, started: StudyStarted, study: StudyRequest, trial_id: str) -> Path:
        return study.workdir / "trials" / trial_id

    def suggest_outside(self, study: StudyRequest, values: dict[str, Any]) -> None:
        """A trial the oracle saved as running with `values` (as a resumed study finds it),
        so the oracle hands it out first."""
        from backends.local.oracles import build_oracle

        space = study.space
        oracle = build_oracle(space, space.algorithm, space.budget.max_trials, 1, study.workdir)
        trial = oracle.create_trial("slot-0")
        trial.hyperparameters.values.update(values)
        oracle._save_trial(trial)


class VertexHarness:
    """The vertex backend against the Vertex emulator, built from VertexSettings like the CLI
    builds it; trial directories are the emulator's stand-ins for gs:// paths."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.emulator = request.getfixturevalue("vertex_env")
        self.monkeypatch = request.getfixturevalue("monkeypatch")
        from dualtune.emulator_client import emulator_settings  # the edge: URL -> settings

        self.settings = emulator_settings(self.emulator.url)
        assert isinstance(self.settings, BACKENDS["vertex"].settings_type)

    def trial_dir(self, started: StudyStarted, study: StudyRequest, trial_id: str) -> Path:
        return Path(self.emulator.gs_to_local(f"{started.output_dir}/{trial_id}"))

    def suggest_outside(self, study: StudyRequest, values: dict[str, Any]) -> None:
        """The emulator's first suggestion of the next job is `values` (a buggy algorithm)."""
        from vertex_emulator import tuning

        real = tuning.make_suggester

        def first_outside(*args: Any, **kwargs: Any) -> Any:
            inner = real(*args, **kwargs)
            pending = [dict(values)]
            original = inner.suggest
            inner.suggest = lambda trial_id: pending.pop() if pending else original(trial_id)
            return inner

        self.monkeypatch.setattr(tuning, "make_suggester", first_outside)


HARNESSES: dict[str, Callable[[pytest.FixtureRequest], Any]] = {
    "local": LocalHarness,
    "vertex": VertexHarness,
}


@pytest.fixture(params=sorted(BACKENDS))
def harness(request: pytest.FixtureRequest) -> Any:
    name = request.param
    if name not in HARNESSES:
        pytest.fail(f"backend {name!r} is registered but has no harness in {__file__}")
    built = HARNESSES[name](request)
    built.name = name
    return built


def build(harness: Any) -> Backend:
    """The backend as the flow builds it: through its registry entry."""
    return BACKENDS[harness.name].build(harness.settings)


# -- studies ----------------------------------------------------------------------------------
def toy_space(**changes: Any) -> SearchSpace:
    space = load_space(FIXTURES / "toy.yaml")
    budget = dataclasses.replace(space.budget, **changes.pop("budget", {}))
    trainer = dataclasses.replace(space.trainer, script=str(TOY_TRAINER))
    return dataclasses.replace(space, budget=budget, trainer=trainer, **changes)


def study(harness: Any, tmp_path: Path, name: str, space: SearchSpace, *extra: str) -> StudyRequest:
    return StudyRequest(f"{name}-{harness.name}", space, tmp_path / name, tuple(extra))


class Events(list):
    """A sink that keeps every event, checks the stream's order as it comes, and can act on
    an event (`on`: called with each event and the events so far)."""

    def __init__(self, on: Callable[[Any, list], None] | None = None) -> None:
        super().__init__()
        self.on = on

    def __call__(self, event: Any) -> None:
        self.append(event)
        if self.on is not None:
            self.on(event, self)

    def of(self, kind: type) -> list:
        return [e for e in self if isinstance(e, kind)]

    def ends(self) -> dict[str, TrialEnded]:
        return {e.trial_id: e for e in self.of(TrialEnded)}

    def steps(self, trial_id: str) -> list[int]:
        return [e.step for e in self.of(Measured) if e.trial_id == trial_id]


def check_stream(events: Events, ended: StudyEnded) -> None:
    """What every stream keeps to: StudyStarted first, StudyEnded last and returned; a trial
    starts before it is measured, is measured at a step once, ends at most once and is not
    measured after; the study's best follows trialkit.status's rule over the ended trials."""
    assert isinstance(events[0], StudyStarted) and events[-1] == ended
    assert len(events.of(StudyStarted)) == len(events.of(StudyEnded)) == 1
    started: set[str] = set()
    ended_ids: set[str] = set()
    measured: set[tuple[str, int | None, int]] = set()
    for event in events[1:-1]:
        if isinstance(event, TrialStarted):
            assert event.trial_id not in started, f"trial {event.trial_id} started twice"
            started.add(event.trial_id)
        elif isinstance(event, Measured):
            assert event.trial_id in started and event.trial_id not in ended_ids
            point = (event.trial_id, event.execution, event.step)
            assert point not in measured, f"{event} measured twice"
            measured.add(point)
        elif isinstance(event, TrialEnded):
            assert event.trial_id in started and event.trial_id not in ended_ids
            assert event.status in (COMPLETED, FAILED, STOPPED)
            ended_ids.add(event.trial_id)
    space = events[0].space
    finals = [(e.trial_id, e.status, e.final_value) for e in events.of(TrialEnded)]
    best = best_of(finals, space.metric.minimize)
    assert (ended.best_trial_id, ended.best_value) == (best if best else (None, None))


# -- the cases ------------------------------------------------------------------------------
def test_the_registry_entry_builds_its_backend_from_settings_that_keep_the_protocol(harness):
    entry = BACKENDS[harness.name]
    assert isinstance(harness.settings, BackendSettings)
    assert isinstance(harness.settings, entry.settings_type)
    backend = build(harness)
    assert backend.name == harness.name and isinstance(backend, entry.backend_type)
    assert entry.submits_jobs == isinstance(backend, JobBackend)
    recorded = harness.settings.record()
    assert isinstance(harness.settings.resumed(recorded), entry.settings_type)


def test_a_completed_trial(harness, tmp_path):
    space = toy_space(budget={"max_trials": 1, "parallel_trials": 1})
    request = study(harness, tmp_path, "completed", space, "--num_epochs=2")
    events = Events()
    ended = build(harness).run(request, events)
    check_stream(events, ended)
    assert ended.status == COMPLETED
    (started,) = events.of(TrialStarted)
    assert started.number == 1
    assert set(started.params) == set(space.names)
    for name, value in started.params.items():
        assert type(value) is space.parameter(name).python_type()
    (end,) = events.of(TrialEnded)
    values = [e.value for e in events.of(Measured)]
    assert events.steps(started.trial_id) == [1, 2]
    assert end.status == COMPLETED and end.reason == ""
    assert math.isclose(end.final_value, min(values))  # measurement_selection: best
    assert (ended.best_trial_id, ended.best_value) == (started.trial_id, end.final_value)
    checkpoint = harness.trial_dir(events[0], request, started.trial_id) / "checkpoints"
    assert (checkpoint / "state.json").is_file()  # the trainer ran where the backend says


def test_a_failed_trial_keeps_its_reason(harness, tmp_path):
    space = toy_space(budget={"max_trials": 1, "parallel_trials": 1, "max_failed_trials": 1})
    request = study(harness, tmp_path, "failed", space, "--num_epochs=2", "--fail_above=-1")
    events = Events()
    ended = build(harness).run(request, events)
    check_stream(events, ended)
    (end,) = events.of(TrialEnded)
    assert end.status == FAILED
    assert "toy failure on purpose" in end.reason  # the trainer's own last line
    assert events.steps(end.trial_id) == [1]  # what it measured before failing is kept
    assert ended.best_trial_id is None and ended.best_value is None


def test_a_trial_reporting_nan_fails_saying_so(harness, tmp_path):
    space = toy_space(budget={"max_trials": 1, "parallel_trials": 1, "max_failed_trials": 1})
    request = study(harness, tmp_path, "nan", space, "--num_epochs=2", "--nan_above=-1")
    events = Events()
    ended = build(harness).run(request, events)
    check_stream(events, ended)
    (end,) = events.of(TrialEnded)
    assert end.status == FAILED
    assert "val_rmse was nan" in end.reason
    assert ended.best_trial_id is None


def test_an_early_stop_ends_the_trial_stopped(harness, tmp_path):
    """Grid over x: 0.3 completes first, then 0.9 (worse at every epoch) is stopped early by
    the median rule. Epochs of 1 s: a job backend sees the trial STOPPING between polls."""
    space = toy_space(
        parameters=(Parameter("x", "discrete", values=(0.3, 0.9)),),
        algorithm="grid",
        early_stopping=EarlyStopping(policy="median"),
        budget={"max_trials": 2, "parallel_trials": 1, "max_failed_trials": 0},
    )
    request = study(harness, tmp_path, "early", space, "--num_epochs=3", "--epoch_seconds=1")
    events = Events()
    ended = build(harness).run(request, events)
    check_stream(events, ended)
    params = {e.trial_id: e.params["x"] for e in events.of(TrialStarted)}
    ends = events.ends()
    by_x = {params[t]: e for t, e in ends.items()}
    assert by_x[0.3].status == COMPLETED
    assert by_x[0.9].status == STOPPED and "stopped early" in by_x[0.9].reason
    assert len(events.steps(by_x[0.9].trial_id)) < 3  # it trained fewer epochs
    assert by_x[0.9].final_value is not None  # its best value so far stands
    assert ended.status == COMPLETED


def interrupt_second_trial(event: Any, events: list) -> None:
    """Ctrl-C (a real SIGINT to this process) once a trial has completed and another trial has
    measured its first epoch."""
    done = {e.trial_id for e in events if isinstance(e, TrialEnded) and e.status == COMPLETED}
    if isinstance(event, Measured) and done and event.trial_id not in done:
        if not getattr(events, "interrupted", False):
            events.interrupted = True
            os.kill(os.getpid(), signal.SIGINT)


def interrupted_run(harness: Any, backend: Backend, request: StudyRequest, also=None) -> Events:
    def on(event: Any, events: list) -> None:
        if also is not None:
            also(event)
        interrupt_second_trial(event, events)

    events = Events(on)
    ended = backend.run(request, events)
    check_stream(events, ended)
    assert getattr(events, "interrupted", False), "no trial reached the interruption"
    return events


def ctrl_c_space() -> SearchSpace:
    return toy_space(budget={"max_trials": 3, "parallel_trials": 1, "max_failed_trials": 0})


def test_ctrl_c_stops_the_study_and_keeps_finished_trials(harness, tmp_path):
    request = study(harness, tmp_path, "ctrlc", ctrl_c_space(), "--epoch_seconds=0.3")
    events = interrupted_run(harness, build(harness), request)
    ended = events[-1]
    assert ended.status == STOPPED and "Ctrl-C" in ended.reason
    ends = events.ends()
    statuses = sorted(e.status for e in ends.values())
    assert statuses == [COMPLETED, STOPPED]  # the finished trial kept, the running one stopped
    (done,) = [t for t, e in ends.items() if e.status == COMPLETED]
    assert events.steps(done) == [1, 2, 3]
    assert len(events.of(TrialStarted)) == 2  # nothing started after the interruption


def mlflow_trials(uri: str, study_name: str) -> tuple[list, dict[str, list[int]]]:
    """(the study's parent runs, trial id -> the steps of its points) from the MLflow store."""
    client = MlflowClient(uri)
    runs = mlflow_study_runs(client, study_name)
    parents = [r for r in runs if r.data.tags.get("dualtune.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("dualtune.role") == "trial"]
    ids = [r.data.tags["dualtune.trial_id"] for r in trials]
    assert len(ids) == len(set(ids)), f"a trial has two runs: {sorted(ids)}"
    steps = {
        r.data.tags["dualtune.trial_id"]: sorted(
            m.step for m in client.get_metric_history(r.info.run_id, "val_rmse")
        )
        for r in trials
    }
    return parents, steps


def test_resume_after_ctrl_c_duplicates_no_trial_and_no_measurement(harness, tmp_path, store):
    """Interrupted, then resumed the way the flow resumes (a job backend attaches to the job it
    submitted, another backend runs the study again in its workdir), each time through a
    fresh MLflow recorder, as two processes would."""
    from dualtune.mlflow_recorder import MlflowRecorder

    request = study(harness, tmp_path, "resume", ctrl_c_space(), "--epoch_seconds=0.3")
    first_recorder = MlflowRecorder(store)
    first = interrupted_run(harness, build(harness), request, first_recorder.handle)
    first_recorder.flush()
    done = {t for t, e in first.ends().items() if e.status == COMPLETED}

    second_recorder = MlflowRecorder(store)
    second = Events(lambda event, _events: second_recorder.handle(event))
    backend = build(harness)
    if isinstance(backend, JobBackend):
        ended = backend.attach(first[0].job, request, second)
    else:
        ended = backend.run(request, second)
    second_recorder.flush()
    check_stream(second, ended)

    for started in second.of(TrialStarted):  # a finished trial is replayed, never run again
        if started.trial_id in done:
            assert started.pid is None
            assert second.steps(started.trial_id) == first.steps(started.trial_id)
    parents, steps = mlflow_trials(store, request.study)
    assert len(parents) == 1
    trial_ids = {e.trial_id for e in (*first.of(TrialStarted), *second.of(TrialStarted))}
    assert set(steps) == trial_ids
    for trial_id, recorded in steps.items():
        assert recorded == sorted(set(recorded)), f"trial {trial_id} has a step twice"
    if not isinstance(backend, JobBackend):  # the study ran on to its budget
        assert ended.status == COMPLETED and len(trial_ids) == 3
        assert all(e.status == COMPLETED for e in second.of(TrialEnded))
        assert all(recorded == [1, 2, 3] for recorded in steps.values())


def test_a_suggestion_outside_the_space_fails_naming_the_parameter_and_never_runs(
    harness, tmp_path
):
    space = toy_space(
        algorithm="random",
        budget={"max_trials": 2, "parallel_trials": 1, "max_failed_trials": 1},
    )
    request = study(harness, tmp_path, "outside", space, "--num_epochs=1")
    harness.suggest_outside(request, OUTSIDE)
    events = Events()
    ended = build(harness).run(request, events)
    check_stream(events, ended)
    started = {e.trial_id: e for e in events.of(TrialStarted)}
    ends = events.ends()
    (refused,) = [t for t, e in started.items() if e.params.get("units") == 300]
    assert ends[refused].status == FAILED
    assert "outside the search space of 'toy': units: 300 is above max 16" in ends[refused].reason
    assert started[refused].pid is None and events.steps(refused) == []
    trial_dir = harness.trial_dir(events[0], request, refused)
    assert not (trial_dir / "checkpoints" / "state.json").exists()  # the trainer never ran
    (other,) = [t for t in started if t != refused]
    assert ends[other].status == COMPLETED
    assert (harness.trial_dir(events[0], request, other) / "checkpoints" / "state.json").exists()


def test_finalize_trains_the_parameters_and_returns_measurements_and_a_model(harness, tmp_path):
    space = toy_space()  # finalize_args: --num_epochs=4
    params = {"x": 0.3, "units": 8, "act": "tanh"}
    # register=False: a backend's own model registry (Vertex's) needs a SavedModel the toy
    # trainer does not export; registering is tested in tests/dualtune/test_vertex_serving.py.
    request = FinalizeRequest(
        f"finalize-{harness.name}", space, params, tmp_path / "finalize", register=False
    )
    events = Events()
    result = build(harness).finalize(request, events)
    assert [step for step, _ in result.measurements] == [1, 2, 3, 4]
    assert all(math.isfinite(value) for _, value in result.measurements)
    assert [(e.step, e.value) for e in events.of(Measured)] == result.measurements
    model = Path(result.model_dir) / "model.json"
    assert model.is_file()
    trained = json.loads(model.read_text())["args"]
    assert (trained["x"], trained["units"], trained["act"], trained["num_epochs"]) == (
        0.3,
        8,
        "tanh",
        4,
    )
