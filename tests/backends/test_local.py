"""The local backend with real Keras Tuner oracles and real trial processes (the toy trainer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from backends.base import (
    COMPLETED,
    FAILED,
    STOPPED,
    Measured,
    StudyEnded,
    StudyRequest,
    StudyStarted,
    TrialEnded,
    TrialStarted,
)
from backends.local.backend import LocalBackend
from backends.local.settings import LocalSettings
from search_spaces.model import Budget, Condition, EarlyStopping, Parameter, SearchSpace, Trainer
from tests.conftest import TOY_TRAINER

pytestmark = pytest.mark.slow


def toy_space(**changes) -> SearchSpace:
    params = (
        Parameter("x", "double", min=0.0, max=1.0, step=0.25),
        Parameter("units", "integer", min=4, max=16, scale="log"),
        Parameter("act", "categorical", values=("relu", "tanh")),
    )
    base = dict(
        name="toy",
        parameters=params,
        trainer=Trainer(module=None, script=str(TOY_TRAINER), tuning_args=("--num_epochs=3",)),
        budget=Budget(max_trials=4, parallel_trials=2, max_failed_trials=2),
        algorithm="random",
    )
    base.update(changes)
    return SearchSpace(**base)


def run_study(tmp_path: Path, space: SearchSpace, extra=(), **settings):
    """settings: LocalSettings fields (seed 3 unless given)."""
    events = []
    request = StudyRequest(
        study="t", space=space, workdir=tmp_path / "study", extra_args=tuple(extra)
    )
    backend = LocalBackend(LocalSettings(**{"seed": 3, **settings}))
    ended = backend.run(request, events.append)
    return ended, events


def by_type(events, kind):
    return [e for e in events if isinstance(e, kind)]


@pytest.mark.parametrize("algorithm", ["random", "bayesian", "grid"])
def test_every_algorithm_runs_trials_and_streams_each_epoch(tmp_path, algorithm):
    ended, events = run_study(tmp_path, toy_space(algorithm=algorithm))
    assert isinstance(events[0], StudyStarted) and isinstance(events[-1], StudyEnded)
    started = by_type(events, TrialStarted)
    assert len(started) == 4
    assert ended.status == COMPLETED
    for trial in started:
        steps = [e.step for e in by_type(events, Measured) if e.trial_id == trial.trial_id]
        assert steps == [1, 2, 3]
        assert isinstance(trial.params["units"], int) and isinstance(trial.params["x"], float)
    ends = by_type(events, TrialEnded)
    assert {e.status for e in ends} == {COMPLETED}
    best = min(ends, key=lambda e: e.final_value)
    assert ended.best_trial_id == best.trial_id
    # The final measurement is the best (Vertex's default), here the last epoch's.
    trial = started[0]
    values = [e.value for e in by_type(events, Measured) if e.trial_id == trial.trial_id]
    final = next(e.final_value for e in ends if e.trial_id == trial.trial_id)
    assert final == min(values)


def test_trial_gets_vertex_argv_and_environment(tmp_path):
    ended, events = run_study(
        tmp_path, toy_space(budget=Budget(1, 1, 0)), extra=["--skip_full_eval"]
    )
    trial = by_type(events, TrialStarted)[0]
    record = json.loads((Path(trial.directory) / "model" / "model.json").read_text())
    assert record["argv"][0] == "--num_epochs=3"
    assert record["argv"][1] == "--skip_full_eval"
    assert record["argv"][2:] == [
        f"--x={trial.params['x']}",
        f"--units={trial.params['units']}",
        f"--act={trial.params['act']}",
    ]
    trial_dir = Path(trial.directory)
    assert (trial_dir / "hypertune" / "output.metrics").is_file()
    assert (trial_dir / "checkpoints" / "state.json").is_file()


def test_parallel_trials_overlap_in_time(tmp_path):
    space = toy_space(
        trainer=Trainer(
            module=None,
            script=str(TOY_TRAINER),
            tuning_args=("--num_epochs=2", "--epoch_seconds=0.6"),
        )
    )
    ended, events = run_study(tmp_path, space)
    assert ended.status == COMPLETED
    order = [type(e).__name__ for e in events if isinstance(e, (TrialStarted, TrialEnded))]
    # With two slots, the second trial starts before the first one ends.
    assert order[:2] == ["TrialStarted", "TrialStarted"]


def test_failing_trials_are_recorded_and_the_study_stops_after_max_failed(tmp_path):
    space = toy_space(
        parameters=(Parameter("x", "double", min=0.6, max=1.0),),
        trainer=Trainer(
            module=None, script=str(TOY_TRAINER), tuning_args=("--num_epochs=2", "--fail_above=0.5")
        ),
        budget=Budget(max_trials=6, parallel_trials=1, max_failed_trials=1),
    )
    ended, events = run_study(tmp_path, space)
    failed = [e for e in by_type(events, TrialEnded) if e.status == FAILED]
    assert len(failed) == 2
    assert "exit status 1" in failed[0].reason and "toy failure on purpose" in failed[0].reason
    assert ended.status == FAILED and "max-failed-trials" in ended.reason
    # The failed trial's epoch-1 measurement was still streamed.
    assert any(isinstance(e, Measured) and e.trial_id == failed[0].trial_id for e in events)


def test_nan_and_hang_end_as_failed_with_reason(tmp_path):
    space = toy_space(
        parameters=(Parameter("x", "double", min=0.6, max=1.0),),
        trainer=Trainer(module=None, script=str(TOY_TRAINER), tuning_args=("--nan_above=0.5",)),
        budget=Budget(max_trials=1, parallel_trials=1, max_failed_trials=5),
    )
    _, events = run_study(tmp_path, space)
    (end,) = by_type(events, TrialEnded)
    assert end.status == FAILED and "val_rmse was nan at epoch 1" in end.reason
    space = toy_space(
        parameters=(Parameter("x", "double", min=0.6, max=1.0),),
        trainer=Trainer(module=None, script=str(TOY_TRAINER), tuning_args=("--hang_above=0.5",)),
        budget=Budget(max_trials=1, parallel_trials=1, max_failed_trials=5),
    )
    _, events = run_study(tmp_path / "hang", space, hang_timeout_s=2.0)
    (end,) = by_type(events, TrialEnded)
    assert end.status == FAILED and "hung: no new measurement for 2 s" in end.reason


def test_hyperband_passes_epoch_budget_and_warm_starts_from_parent(tmp_path):
    space = toy_space(
        algorithm="hyperband",
        hyperband_max_epochs=3,
        trainer=Trainer(module=None, script=str(TOY_TRAINER)),
        budget=Budget(max_trials=6, parallel_trials=2, max_failed_trials=0),
    )
    ended, events = run_study(tmp_path, space)
    assert ended.status == COMPLETED
    continued = [e for e in by_type(events, TrialStarted) if e.hyperband and e.hyperband.parent]
    assert continued, "Hyperband continued no trial within the budget"
    child = continued[0]
    record = json.loads((Path(child.directory) / "model" / "model.json").read_text())
    assert record["warm"] is not None  # it loaded its parent's checkpoint
    assert f"--initial_epoch={child.hyperband.initial_epoch}" in record["argv"]
    steps = [e.step for e in by_type(events, Measured) if e.trial_id == child.trial_id]
    assert steps[0] == child.hyperband.initial_epoch + 1  # no epoch trained twice


def test_conditional_parameter_only_when_parent_matches(tmp_path):
    space = toy_space(
        parameters=(
            Parameter("act", "categorical", values=("relu", "tanh")),
            Parameter("x", "double", min=0.0, max=1.0, condition=Condition("act", ("tanh",))),
        ),
        budget=Budget(max_trials=6, parallel_trials=2, max_failed_trials=0),
    )
    _, events = run_study(tmp_path, space)
    for trial in by_type(events, TrialStarted):
        assert ("x" in trial.params) == (trial.params["act"] == "tanh")


def test_script_trainer_under_another_interpreter(tmp_path):
    # --python: the trials run under the interpreter given, like a Vertex container would.
    venv = tmp_path / "other-venv"
    import site
    import subprocess

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # The other environment has the trainer's one dependency (cloudml-hypertune), nothing else.
    target = subprocess.run(
        [python, "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    hypertune_dir = Path(__import__("hypertune").__file__).parent.parent
    Path(target, "deps.pth").write_text(str(hypertune_dir) + "\n")
    assert str(hypertune_dir) in site.getsitepackages() or hypertune_dir.is_dir()
    events = []
    request = StudyRequest(
        study="t", space=toy_space(budget=Budget(2, 2, 0)), workdir=tmp_path / "study"
    )
    ended = LocalBackend(LocalSettings(python=python, seed=3)).run(request, events.append)
    assert ended.status == COMPLETED
    assert len(by_type(events, Measured)) == 6


def test_median_early_stopping_stops_bad_trials(tmp_path):
    space = toy_space(
        parameters=(Parameter("x", "discrete", values=(0.3, 0.35, 0.9, 1.0)),),
        trainer=Trainer(
            module=None,
            script=str(TOY_TRAINER),
            tuning_args=("--num_epochs=4", "--epoch_seconds=0.4"),
        ),
        algorithm="grid",
        budget=Budget(max_trials=4, parallel_trials=1, max_failed_trials=0),
        early_stopping=EarlyStopping(policy="median", min_steps=1, min_trials=2),
    )
    ended, events = run_study(tmp_path, space)
    ends = {e.trial_id: e for e in by_type(events, TrialEnded)}
    params = {e.trial_id: e.params["x"] for e in by_type(events, TrialStarted)}
    stopped = [t for t, e in ends.items() if e.status == STOPPED]
    assert stopped and all(params[t] >= 0.9 for t in stopped)
    epochs = len(by_type(events, Measured))
    assert epochs < 16  # stopped trials trained fewer epochs
    assert ended.status == COMPLETED


def test_each_slot_is_pinned_to_a_gpu_round_robin(tmp_path, monkeypatch):
    # Two GPUs listed, three slots: trials get one GPU each, the third slot shares GPU 0.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    space = toy_space(
        trainer=Trainer(
            module=None,
            script=str(TOY_TRAINER),
            tuning_args=("--num_epochs=2", "--epoch_seconds=0.5"),
        ),
        budget=Budget(max_trials=3, parallel_trials=3, max_failed_trials=0),
    )
    ended, events = run_study(tmp_path, space)
    assert ended.status == COMPLETED
    seen = {}
    for trial in by_type(events, TrialStarted):
        record = json.loads((Path(trial.directory) / "model" / "model.json").read_text())
        seen[trial.gpu] = seen.get(trial.gpu, 0) + 1
        assert record["cuda_visible_devices"] == trial.gpu
    assert seen == {"0": 2, "1": 1}


def test_out_of_memory_in_one_trial_leaves_the_others_alone(tmp_path):
    space = toy_space(
        parameters=(Parameter("x", "discrete", values=(0.2, 0.4, 0.9)),),
        trainer=Trainer(module=None, script=str(TOY_TRAINER), tuning_args=("--oom_above=0.5",)),
        algorithm="grid",
        budget=Budget(max_trials=3, parallel_trials=3, max_failed_trials=1),
    )
    ended, events = run_study(tmp_path, space)
    params = {e.trial_id: e.params["x"] for e in by_type(events, TrialStarted)}
    ends = {e.trial_id: e for e in by_type(events, TrialEnded)}
    for trial_id, end in ends.items():
        if params[trial_id] > 0.5:
            assert end.status == FAILED and end.reason.startswith("GPU/host out of memory")
        else:
            assert end.status == COMPLETED  # its neighbours trained to the end
    assert ended.status == COMPLETED
