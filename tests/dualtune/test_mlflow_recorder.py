"""The MLflow recorder's write path: points batched, none lost, doubled or late, into a real
SQLite store through the real recording lane."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from backends.base import COMPLETED, Measured, StudyEnded, StudyStarted, TrialEnded, TrialStarted
from dualtune.mlflow_recorder import MlflowRecorder
from dualtune.recording import Dispatcher
from search_spaces.loader import load_space
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow  # a fresh MLflow SQLite store per test (schema migrations)


class CountingClient:
    """The recorder's real MlflowClient, counting metric writes; `lose_answers` makes the next
    writes happen in the store but raise, as a request whose answer was lost would."""

    def __init__(self, client, lose_answers: int = 0) -> None:
        self.client, self.metric_calls, self.lose_answers = client, 0, lose_answers

    def __getattr__(self, name):
        return getattr(self.client, name)

    def log_batch(self, run_id, metrics=(), **kwargs):
        self.metric_calls += bool(metrics)
        self.client.log_batch(run_id, metrics=metrics, **kwargs)
        if metrics and self.lose_answers:
            self.lose_answers -= 1
            raise ConnectionError("answer lost")

    def log_metric(self, *args, **kwargs):
        self.metric_calls += 1
        self.client.log_metric(*args, **kwargs)


@pytest.fixture
def recorder(isolated):
    rec = MlflowRecorder(f"sqlite:///{isolated / 'mlflow.db'}")
    rec.client = CountingClient(rec.client)
    return rec


def study_events(trials: int, epochs: int) -> list:
    events = [StudyStarted("s", "local", "random", load_space(FIXTURES / "toy.yaml"))]
    for t in range(trials):
        events.append(TrialStarted(str(t), t + 1, {"x": 0.5, "units": 8, "act": "relu"}))
        events += [Measured(str(t), e, 1.0 / e + t) for e in range(1, epochs + 1)]
        events.append(TrialEnded(str(t), COMPLETED, 1.0 / epochs + t))
    return [*events, StudyEnded("s", COMPLETED, "0", 1.0 / epochs)]


def histories(rec: MlflowRecorder) -> dict[str, list[int]]:
    client = rec.client.client
    return {
        trial_id: [m.step for m in client.get_metric_history(run_id, rec.tag)]
        for trial_id, run_id in rec.runs.items()
    }


def test_a_burst_is_written_in_batches_and_a_replay_adds_nothing(recorder):
    events = study_events(trials=3, epochs=5)
    dispatcher = Dispatcher([recorder])
    for event in events + [e for e in events if isinstance(e, Measured)]:  # then a replay
        dispatcher(event)
    assert dispatcher.close(timeout_s=120)
    assert histories(recorder) == {"0": [1, 2, 3, 4, 5], "1": [1, 2, 3, 4, 5], "2": [1, 2, 3, 4, 5]}
    # 15 points in at most one batch a trial, plus one best_val_rmse point a finished trial.
    assert recorder.client.metric_calls <= 3 + 3


def test_a_lone_point_lands_without_waiting_for_a_later_event(recorder):
    dispatcher = Dispatcher([recorder])
    for event in study_events(trials=1, epochs=1)[:3]:  # started, trial started, epoch 1
        dispatcher(event)
    deadline = time.monotonic() + 60
    while not (recorder.runs and histories(recorder)["0"]):
        assert time.monotonic() < deadline, "epoch 1 never reached MLflow"
        time.sleep(0.05)
    assert histories(recorder) == {"0": [1]}
    assert dispatcher.close(timeout_s=60)


def test_a_batch_whose_answer_was_lost_is_not_written_twice(recorder):
    recorder.client.lose_answers = 1
    dispatcher = Dispatcher([recorder], max_backoff_s=0.5)
    for event in study_events(trials=2, epochs=4):
        dispatcher(event)
    assert dispatcher.close(timeout_s=120)
    assert histories(recorder) == {"0": [1, 2, 3, 4], "1": [1, 2, 3, 4]}


READ = """
import sys
from dualtune.cli import main
code = main(sys.argv[1:])
heavy = {m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "keras_tuner"}
print("HEAVY", sorted(heavy), code)
"""


@pytest.mark.parametrize("command", [["trials", "--study", "s"], ["compare", "s"]])
def test_read_commands_import_neither_tensorflow_nor_keras(recorder, isolated, command):
    dispatcher = Dispatcher([recorder])
    for event in study_events(trials=2, epochs=2):
        dispatcher(event)
    assert dispatcher.close(timeout_s=120)
    argv = [sys.executable, "-c", READ, *command, "--tracking-uri", recorder.uri]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=isolated)
    assert done.stdout.strip().splitlines()[-1] == "HEAVY [] 0", done.stderr
