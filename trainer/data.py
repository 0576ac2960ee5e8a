"""Reading the flights CSVs and the input pipeline that feeds the model.

The CSVs are parsed once into memory (pandas through tf.io.gfile, so gs:// works), then each
batch is a vectorised gather of a slice of a seeded permutation of the row indices: tf.data never
touches single examples, which keeps the pipeline far ahead of the model (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from trainer.errors import TrainerError

if TYPE_CHECKING:
    import tensorflow as tf

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "ontime",
    "dep_delay",
    "taxi_out",
    "distance",
    "origin",
    "dest",
    "dep_hour",
    "is_weekday",
    "carrier",
    "dep_airport_lat",
    "dep_airport_lon",
    "arr_airport_lat",
    "arr_airport_lon",
    "data_split",
)
LABEL = "ontime"
STRING_FEATURES = ("carrier", "origin", "dest")
LAT_FEATURES = ("dep_airport_lat", "arr_airport_lat")
LON_FEATURES = ("dep_airport_lon", "arr_airport_lon")
NUMERIC_FEATURES = (
    "dep_delay",
    "taxi_out",
    "distance",
    "dep_hour",
    "is_weekday",
    *LAT_FEATURES,
    *LON_FEATURES,
)
FEATURES = NUMERIC_FEATURES + STRING_FEATURES


@dataclass(frozen=True)
class DataStats:
    """What the model learns from the training data before training: vocabularies and ranges."""

    vocabularies: dict[str, tuple[str, ...]]
    mean: tuple[float, ...]  # of NUMERIC_FEATURES, in that order
    variance: tuple[float, ...]
    lat_range: tuple[float, float]
    lon_range: tuple[float, float]


def expand_patterns(patterns: str) -> list[str]:
    """Comma-separated paths or glob patterns (local or gs://) to the sorted files they name."""
    import tensorflow as tf

    files: list[str] = []
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise TrainerError(f"no file matches {pattern!r}")
        files.extend(matched)
    if not files:
        raise TrainerError(f"no data file given in {patterns!r}")
    return files


def read_csv(patterns: str, limit: int | None = None) -> pd.DataFrame:
    """The feature and label columns of every file in `patterns`, or of the first `limit` rows.

    A process keeps what it read (see `_READ`): reading the same files again, unchanged, costs a
    stat per file. Treat the frame as read-only."""
    import tensorflow as tf

    files = expand_patterns(patterns)
    key = (tuple(p if "://" in p else os.path.abspath(p) for p in files), limit)
    versions = tuple(_version(path) for path in files)
    known = _READ.get(key)
    if known is not None and known[0] == versions:
        _remember(key, versions, known[1])  # the most recently used is kept longest
        logger.info("read %d rows from %s (in memory)", len(known[1]), patterns)
        return known[1]
    frames = []
    remaining = limit
    for path in files:
        with tf.io.gfile.GFile(path, "rb") as handle:
            frame = pd.read_csv(handle, nrows=remaining, dtype=_dtypes())
        frames.append(_checked(frame, path))
        if remaining is not None:
            remaining -= len(frame)
            if remaining <= 0:
                break
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    logger.info("read %d rows from %s", len(frame), patterns)
    _remember(key, versions, frame)
    return frame


# What this process read: (files, limit) -> (their versions, the frame). dualtune's trial
# server (backends/local/launcher.py calls trainer.task.warm_up) reads the data once; every
# trial forked from it then finds it here. A file that changed since is read again.
_READ: dict[tuple[tuple[str, ...], int | None], tuple[tuple, pd.DataFrame]] = {}
_READ_KEEP = 4


def _version(path: str) -> tuple[int, ...]:
    """What tells a changed file from an unchanged one: its size and modification time (local
    files: to the nanosecond, and the inode, which a file replaced by a rename changes)."""
    if "://" not in path:
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime_ns, stat.st_ino
    import tensorflow as tf

    stat = tf.io.gfile.stat(path)
    return stat.length, stat.mtime_nsec


def _remember(key: tuple, versions: tuple, frame: pd.DataFrame) -> None:
    _READ.pop(key, None)
    _READ[key] = (versions, frame)
    while len(_READ) > _READ_KEEP:
        del _READ[next(iter(_READ))]


def _dtypes() -> dict[str, Any]:
    types: dict[str, Any] = {name: np.float32 for name in (LABEL, *NUMERIC_FEATURES)}
    types.update({name: str for name in STRING_FEATURES})
    return types


def _checked(frame: pd.DataFrame, path: str) -> pd.DataFrame:
    missing = [c for c in (LABEL, *FEATURES) if c not in frame.columns]
    if missing:
        raise TrainerError(f"{path}: missing column(s) {', '.join(missing)}")
    empty = [c for c in (LABEL, *FEATURES) if frame[c].isna().any()]
    if empty:
        raise TrainerError(f"{path}: empty values in column(s) {', '.join(empty)}")
    return frame[[LABEL, *FEATURES]]


def sample_rows(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """A fixed random sample of `rows` rows of `frame` (all of them if it has no more), in file
    order: the validation sample.

    Each row's rank is a hash of (seed, its position), so the sample depends only on the file,
    `rows` and `seed`: every trial, backend, process and machine (any numpy version) validates on
    the same rows, and a smaller sample is part of a larger one. A file in date order is thus
    sampled over its whole date range, never only its first days (docs/data.md)."""
    if rows >= len(frame):
        return frame
    return frame.iloc[sample_positions(len(frame), rows, seed)].reset_index(drop=True)


def sample_positions(length: int, rows: int, seed: int) -> np.ndarray:
    """The increasing positions (0-based) of the rows `sample_rows` picks out of `length`."""
    keys = _splitmix64(np.arange(length, dtype=np.uint64) + _splitmix64(np.uint64(seed)))
    return np.sort(np.argsort(keys, kind="stable")[:rows])


def _splitmix64(x: np.ndarray | np.uint64) -> np.ndarray:
    """SplitMix64's finaliser: a fixed, well-mixed 64-bit hash (wrapping uint64 arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def compute_stats(frame: pd.DataFrame) -> DataStats:
    """Vocabularies, normalisation moments and lat/lon ranges of the training data."""
    numeric = frame[list(NUMERIC_FEATURES)].to_numpy(dtype=np.float64)
    lats = frame[list(LAT_FEATURES)].to_numpy()
    lons = frame[list(LON_FEATURES)].to_numpy()
    return DataStats(
        vocabularies={c: tuple(sorted(frame[c].unique())) for c in STRING_FEATURES},
        mean=tuple(float(m) for m in numeric.mean(axis=0)),
        variance=tuple(float(v) for v in numeric.var(axis=0)),
        lat_range=(float(lats.min()), float(lats.max())),
        lon_range=(float(lons.min()), float(lons.max())),
    )


def to_tensors(frame: pd.DataFrame) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Column tensors of shape (rows, 1): the model's named inputs, and the label."""
    import tensorflow as tf

    features = {}
    for name in FEATURES:
        dtype = object if name in STRING_FEATURES else np.float32
        features[name] = tf.constant(frame[name].to_numpy(dtype=dtype).reshape(-1, 1))
    label = tf.constant(frame[LABEL].to_numpy(dtype=np.float32).reshape(-1, 1))
    return features, label


def _gatherer(frame: pd.DataFrame):
    import tensorflow as tf

    features, label = to_tensors(frame)

    def gather(index: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        return {k: tf.gather(v, index) for k, v in features.items()}, tf.gather(label, index)

    return gather


def train_dataset(
    frame: pd.DataFrame, batch_size: int, seed: int, skip_batches: int = 0
) -> tf.data.Dataset:
    """Endless batches; every pass over the data is a fresh permutation seeded by (seed, pass).

    A pass is rows // batch_size full batches (the rows % batch_size left over differ from pass
    to pass). tf.data handles one index vector per batch, never single examples, and
    `skip_batches` fast-forwards in O(1), so a resumed run sees the batches an uninterrupted
    run would have seen.
    """
    import tensorflow as tf

    rows = len(frame)
    per_pass = rows // batch_size
    if per_pass == 0:
        raise TrainerError(f"{rows} training rows do not fill one batch of {batch_size}")
    first_pass, offset = divmod(skip_batches, per_pass)

    def batches_of_pass(number: tf.Tensor) -> tf.data.Dataset:
        pass_seed = tf.stack([tf.constant(seed, tf.int64), number])
        order = tf.random.experimental.stateless_shuffle(tf.range(rows, dtype=tf.int64), pass_seed)
        order = tf.reshape(order[: per_pass * batch_size], [per_pass, batch_size])
        return tf.data.Dataset.from_tensor_slices(order)

    indices = tf.data.Dataset.range(first_pass, 2**62).flat_map(batches_of_pass).skip(offset)
    batches = indices.map(_gatherer(frame), num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def eval_dataset(frame: pd.DataFrame, batch_size: int) -> tf.data.Dataset:
    """One ordered, cached pass over `frame` in batches (the last one may be smaller)."""
    import tensorflow as tf

    batches = tf.data.Dataset.range(len(frame)).batch(batch_size)
    batches = batches.map(_gatherer(frame), num_parallel_calls=tf.data.AUTOTUNE)
    return batches.cache().prefetch(tf.data.AUTOTUNE)
