"""The input pipeline: seeded, reshuffled every pass, resumable, and complete."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import data
from trainer.errors import TrainerError


@pytest.fixture(scope="module")
def frame(small_data):
    return data.read_csv(str(small_data["eval"]), limit=1000)


def _distances(dataset, batches: int) -> np.ndarray:
    """The distance column of the first `batches` batches: identifies rows and their order."""
    return np.concatenate([f["distance"].numpy().ravel() for f, _ in dataset.take(batches)])


def test_read_csv_limits_rows_and_expands_globs(small_data):
    assert len(data.read_csv(str(small_data["eval"]), limit=1000)) == 1000
    pattern = str(small_data["eval"].parent / "*.csv")
    assert len(data.read_csv(pattern)) == 1500 + 1500 + 5000
    with pytest.raises(TrainerError, match="no file matches"):
        data.read_csv(str(small_data["eval"].parent / "missing-*.csv"))


def test_train_batches_are_seeded_and_each_pass_is_a_permutation(frame):
    first = _distances(data.train_dataset(frame, 100, seed=7), 20)
    again = _distances(data.train_dataset(frame, 100, seed=7), 20)
    other = _distances(data.train_dataset(frame, 100, seed=8), 20)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    expected = np.sort(frame["distance"].to_numpy())
    np.testing.assert_array_equal(np.sort(first[:1000]), expected)  # pass 1: every row once
    np.testing.assert_array_equal(np.sort(first[1000:]), expected)  # pass 2: again, reshuffled
    assert not np.array_equal(first[:1000], first[1000:])


def test_skipping_batches_resumes_the_same_stream(frame):
    whole = _distances(data.train_dataset(frame, 64, seed=3), 40)
    resumed = _distances(data.train_dataset(frame, 64, seed=3, skip_batches=25), 15)
    np.testing.assert_array_equal(whole[25 * 64 :], resumed)


def test_eval_batches_cover_every_row_in_order(frame):
    batches = list(data.eval_dataset(frame, 300))
    assert [len(label) for _, label in batches] == [300, 300, 300, 100]
    labels = np.concatenate([label.numpy().ravel() for _, label in batches])
    np.testing.assert_array_equal(labels, frame["ontime"].to_numpy())
    assert batches[0][0]["carrier"].shape == (300, 1)
