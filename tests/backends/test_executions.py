"""executions_per_trial (Keras Tuner's): each trial runs the trainer N times at distinct seeds
and scores the mean; every execution's curve is kept. Real trial processes (the toy trainer)
and a real MLflow store."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

from backends.base import (
    COMPLETED,
    FAILED,
    STOPPED,
    Measured,
    StudyRequest,
    TrialEnded,
    TrialStarted,
)
from backends.local.backend import LocalBackend
from backends.local.settings import LocalSettings
from search_spaces.model import Budget, EarlyStopping, Parameter, SearchSpace, Trainer, Trust
from tests.backends import test_vertex
from tests.conftest import TOY_TRAINER
from trialkit.errors import UserError
from trialkit.executions import run_seeds
from trialkit.gcs import fuse_path

pytestmark = pytest.mark.slow

# The toy trainer's value moves with --seed when --seed_noise > 0; it writes its argv to
# AIP_MODEL_DIR/model.json.


def exec_space(executions: int = 2, extra_args: tuple[str, ...] = ()) -> SearchSpace:
    return SearchSpace(
        name="toy",
        parameters=(Parameter("x", "double", min=0.0, max=1.0, step=0.25),),
        trainer=Trainer(
            module=None,
            script=str(TOY_TRAINER),
            tuning_args=("--num_epochs=2", "--seed_noise=0.1", *extra_args),
            seed_flag="--seed",
        ),
        budget=Budget(max_trials=1, parallel_trials=1, max_failed_trials=0),
        algorithm="random",
        trust=Trust(executions_per_trial=executions),
    )


def run(tmp_path: Path, space: SearchSpace, sink=None):
    events: list = []
    request = StudyRequest(study="ex", space=space, workdir=tmp_path / "study")

    def both(event):
        events.append(event)
        if sink is not None:
            sink(event)

    ended = LocalBackend(LocalSettings(seed=3, prewarm=False)).run(request, both)
    return ended, events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_a_trial_runs_twice_at_distinct_seeds_and_scores_the_mean(tmp_path):
    from dualtune.mlflow_recorder import MlflowRecorder

    recorder = MlflowRecorder(f"sqlite:///{tmp_path / 'mlflow.db'}")
    ended, events = run(tmp_path, exec_space(2), recorder.handle)
    recorder.flush()
    assert ended.status == COMPLETED
    (started,) = of(events, TrialStarted)
    (end,) = of(events, TrialEnded)
    seeds = run_seeds(f"trial/{started.trial_id}", 2)
    assert started.executions == 2 and started.execution_seeds == seeds
    trial_dir = tmp_path / "study" / "trials" / started.trial_id
    argvs = [(trial_dir / f"execution-{k}" / "stdout.log").is_file() and k for k in (1, 2)]
    assert argvs == [1, 2]  # each execution ran in its own directory
    points = of(events, Measured)
    curves = {k: {e.step: e.value for e in points if e.execution == k} for k in (1, 2, None)}
    assert sorted(curves[1]) == sorted(curves[2]) == sorted(curves[None]) == [1, 2]
    assert curves[1] != curves[2]  # distinct seeds moved the value
    for step in (1, 2):
        assert math.isclose(curves[None][step], (curves[1][step] + curves[2][step]) / 2)
    # Keras Tuner's score: the mean of each execution's best value.
    expected = (min(curves[1].values()) + min(curves[2].values())) / 2
    assert end.status == COMPLETED and math.isclose(end.final_value, expected)
    # every execution's curve in MLflow, beside the mean curve under the metric's own name
    client = recorder.client
    run_id = recorder.runs[started.trial_id]
    history = {
        key: {m.step: m.value for m in client.get_metric_history(run_id, key)}
        for key in ("val_rmse", "val_rmse/execution-1", "val_rmse/execution-2")
    }
    assert history == {
        "val_rmse": curves[None],
        "val_rmse/execution-1": curves[1],
        "val_rmse/execution-2": curves[2],
    }
    # the display shows each execution's epochs, and the trial's mean as its own
    import io

    from dualtune.display import Display

    out = io.StringIO()
    display = Display(out, live=False)
    for event in events:
        display.handle(event)
    text = out.getvalue()
    assert f"trial {started.trial_id} execution 2 epoch 2 val_rmse" in text
    assert display.rows[started.trial_id].best == min(curves[None].values())
    tags = client.get_run(run_id).data.tags
    assert tags["dualtune.executions"] == "2"
    assert tags["dualtune.execution_seeds"] == ",".join(map(str, seeds))
    # each execution's trainer got its own seed, after the parameter flags
    for k, seed in enumerate(seeds, start=1):
        argv = json.loads((trial_dir / f"execution-{k}" / "model" / "model.json").read_text())
        assert argv["argv"][-2:] == [f"--x={started.params['x']}", f"--seed={seed}"]


def test_a_failed_execution_fails_the_trial_with_its_reason(tmp_path):
    # --fail_above=-1: every execution exits 1 at once; the first one fails the trial.
    ended, events = run(tmp_path, exec_space(2, ("--fail_above=-1",)))
    (end,) = of(events, TrialEnded)
    assert end.status == FAILED
    assert end.reason.startswith("execution 1 of 2, seed ")
    assert "exit status 1" in end.reason
    trial_dir = tmp_path / "study" / "trials" / end.trial_id
    assert not (trial_dir / "execution-2").exists()  # the second never started
    assert ended.status == FAILED


def test_early_stopping_judges_the_mean_while_the_last_execution_runs(tmp_path):
    """x=1.0 is worse than the completed x=0.25 at every epoch: the median rule stops it as
    soon as its mean exists (the last execution's first epoch); the first execution ran whole."""
    space = dataclasses.replace(
        exec_space(2, ("--num_epochs=4", "--epoch_seconds=0.3")),
        parameters=(Parameter("x", "discrete", values=(0.25, 1.0)),),
        budget=Budget(max_trials=2, parallel_trials=1, max_failed_trials=0),
        algorithm="grid",
        early_stopping=EarlyStopping(policy="median"),
    )
    ended, events = run(tmp_path, space)
    ends = {e.trial_id: e for e in of(events, TrialEnded)}
    worse = next(e.trial_id for e in of(events, TrialStarted) if e.params["x"] == 1.0)
    assert ends[worse].status == STOPPED and ends[worse].reason.startswith("stopped early")
    steps = {
        k: [e.step for e in of(events, Measured) if e.trial_id == worse and e.execution == k]
        for k in (1, 2)
    }
    assert steps[1] == [1, 2, 3, 4] and 1 <= len(steps[2]) < 4
    assert ended.best_trial_id != worse


def test_ctrl_c_then_resume_keeps_the_finished_execution(tmp_path):
    """Ctrl-C while execution 2 runs stops the study; run again on its workdir, the trial
    goes on with execution 2 (from its checkpoint) and execution 1 is not run again."""
    space = exec_space(2, ("--epoch_seconds=0.3",))

    interrupted = []

    def interrupt(event):  # once, as a person presses Ctrl-C once
        if isinstance(event, Measured) and event.execution == 2 and not interrupted:
            interrupted.append(event)
            raise KeyboardInterrupt

    ended, events = run(tmp_path, space, interrupt)
    assert ended.status == STOPPED
    (started,) = of(events, TrialStarted)
    first = tmp_path / "study" / "trials" / started.trial_id / "execution-1"
    assert (first / "finished").is_file()
    model = first / "model" / "model.json"
    written = model.stat().st_mtime_ns
    ended, events = run(tmp_path, space)
    assert ended.status == COMPLETED
    assert model.stat().st_mtime_ns == written  # execution 1 did not run again
    points = of(events, Measured)
    curves = {k: {e.step: e.value for e in points if e.execution == k} for k in (1, 2)}
    assert sorted(curves[1]) == sorted(curves[2]) == [1, 2]  # its points, emitted again
    expected = (min(curves[1].values()) + min(curves[2].values())) / 2
    assert math.isclose(of(events, TrialEnded)[-1].final_value, expected)


# -- vertex, through the emulator -----------------------------------------------------------------
emulator, vertex_env = test_vertex.emulator, test_vertex.vertex_env


def module_space(directory: Path, *extra: str) -> SearchSpace:
    """exec_space with the toy trainer as a module (toymod.task): Vertex ships it as an sdist."""
    package = directory / "toymod"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    shutil.copy(TOY_TRAINER, package / "task.py")
    args = ("--num_epochs=2", "--seed_noise=0.1", *extra)
    trainer = Trainer(module="toymod.task", tuning_args=args, seed_flag="--seed")
    return dataclasses.replace(exec_space(2), trainer=trainer)


@pytest.mark.e2e
@pytest.mark.filterwarnings(r"ignore:(currentThread|getName)\(\) is deprecated")
def test_vertex_runs_a_trial_twice_inside_its_container_and_reports_the_mean(vertex_env, isolated):
    """The trial's container runs trialkit.repeat, which runs the (module) trainer twice at
    distinct seeds; Vertex sees the mean curve, executions.json keeps each execution's, and
    the follower emits them as the executions' points."""
    space = module_space(isolated)
    request = StudyRequest(study="vex", space=space, workdir=isolated / "vex")
    events: list = []
    ended = test_vertex.make_backend(vertex_env).run(request, events.append)
    assert ended.status == COMPLETED, ended.reason
    (started,) = of(events, TrialStarted)
    (end,) = of(events, TrialEnded)
    result = json.loads(
        (fuse_path(started.directory, vertex_env.workdir) / "executions.json").read_text()
    )
    assert result["seeds"] == list(run_seeds(f"trial/{started.vertex_trial_id}", 2))
    first, second = ({step: v for step, v in curve} for curve in result["curves"])
    assert sorted(first) == sorted(second) == [1, 2] and first != second
    mean = {e.step: e.value for e in of(events, Measured) if e.execution is None}
    for k, curve in ((1, first), (2, second)):  # the follower brought each execution's curve
        assert {e.step: e.value for e in of(events, Measured) if e.execution == k} == curve
    assert started.executions == 2 and list(started.execution_seeds) == result["seeds"]
    assert sorted(mean) == [1, 2]
    for step in (1, 2):
        assert math.isclose(mean[step], (first[step] + second[step]) / 2)
    assert math.isclose(end.final_value, min(mean.values()))  # Vertex: the best of the mean
    assert math.isclose(result["score"], (min(first.values()) + min(second.values())) / 2)


@pytest.mark.e2e
@pytest.mark.filterwarnings(r"ignore:(currentThread|getName)\(\) is deprecated")
def test_vertex_fails_a_trial_whose_execution_fails(vertex_env, isolated):
    space = module_space(isolated, "--fail_above=-1")
    request = StudyRequest(study="vexfail", space=space, workdir=isolated / "vexfail")
    events: list = []
    test_vertex.make_backend(vertex_env).run(request, events.append)
    (end,) = of(events, TrialEnded)
    assert end.status == FAILED
    assert "trialkit.repeat: execution 1 of 2, seed " in end.reason


def test_vertex_refuses_executions_with_a_script_trainer(isolated):
    from backends.vertex.packaging import check_trainer

    with pytest.raises(UserError, match=r"trust.executions_per_trial: .* module trainer only"):
        check_trainer(exec_space(2).trainer, "space.yaml", executions=2)
