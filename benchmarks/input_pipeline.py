"""Input pipeline benchmark: the trainer's pipeline vs the seed's make_csv_dataset pipeline.

Both read the same CSVs (the embedded train.csv by default) in one process. For each batch size:
- iterate: examples/s pulling batches covering --passes passes over the file, from nothing
  (the trainer's time includes parsing the CSV into memory; the seed's its shuffle-buffer fill),
  iterated in-graph (Dataset.reduce) as Keras does, so Python loop overhead is not measured;
- train: examples/s of model.fit of the real model for --train_steps steps, each pipeline's model
  warmed up (traced) first, so the timed fit starts a fresh iterator as every fit call does.
Prints one row per (batch size, mode) and the trainer/seed ratio.

    .venv/bin/python benchmarks/input_pipeline.py [--data PATTERN] [--batch_sizes 64,256]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from trainer import data  # noqa: E402
from trainer.model import ModelParams, build_model  # noqa: E402

SEED_DEFAULTS = [[0.0]] * 4 + [["na"]] * 2 + [[0.0]] * 2 + [["na"]] + [[0.0]] * 4 + [["na"]]
WARMUP_STEPS = 5


def seed_pipeline(pattern: str, batch_size: int) -> tf.data.Dataset:
    """The seed's input: make_csv_dataset (batched), shuffle(batch_size * 10) batches, repeat."""
    dataset = tf.data.experimental.make_csv_dataset(
        pattern,
        batch_size,
        column_names=list(data.CSV_COLUMNS),
        column_defaults=SEED_DEFAULTS,
        label_name=data.LABEL,
        num_epochs=1,
    )

    def features_and_label(features: dict, label: tf.Tensor) -> tuple[dict, tf.Tensor]:
        features.pop("data_split")
        return dict(features), label

    dataset = dataset.map(features_and_label)
    return dataset.shuffle(batch_size * 10).repeat().prefetch(1)


def trainer_pipeline(pattern: str, batch_size: int) -> tf.data.Dataset:
    """The trainer's input, CSV parsing included: what trainer.task builds."""
    return data.train_dataset(data.read_csv(pattern), batch_size, seed=42)


def examples_per_s_iterating(make: Callable[[], tf.data.Dataset], batches: int, size: int) -> float:
    start = time.perf_counter()
    make().take(batches).reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)
    return batches * size / (time.perf_counter() - start)


def examples_per_s_training(
    make: Callable[[], tf.data.Dataset], stats: data.DataStats, steps: int, size: int
) -> float:
    keras.utils.set_random_seed(42)
    model = build_model(ModelParams(), stats)
    dataset = make()
    model.fit(dataset, epochs=1, steps_per_epoch=WARMUP_STEPS, verbose=0)  # trace
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps * size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="CSV pattern (default: embedded train.csv)")
    parser.add_argument("--batch_sizes", default="64,256")
    parser.add_argument("--passes", type=float, default=1.0, help="iterate: passes over the file")
    parser.add_argument("--train_steps", type=int, default=300)
    args = parser.parse_args()
    if args.data is None:
        from trainer.embedded import ensure_data

        args.data = str(ensure_data()["train"])
    start = time.perf_counter()
    frame = data.read_csv(args.data)
    parse_s = time.perf_counter() - start
    stats = data.compute_stats(frame)
    print(f"data: {args.data} ({len(frame)} rows); tf {tf.__version__}; {os.cpu_count()} CPUs")
    print(f"trainer CSV parse (once per process, included in iterate): {parse_s:.2f} s")
    print(f"{'batch':>5} {'mode':<8} {'trainer ex/s':>13} {'seed ex/s':>11} {'ratio':>6}")
    for size in (int(s) for s in args.batch_sizes.split(",")):
        pipelines = {
            "trainer": lambda size=size: trainer_pipeline(args.data, size),
            "seed": lambda size=size: seed_pipeline(args.data, size),
        }
        batches = max(1, int(args.passes * len(frame) / size))
        iterate = {k: examples_per_s_iterating(m, batches, size) for k, m in pipelines.items()}
        train = {
            k: examples_per_s_training(m, stats, args.train_steps, size)
            for k, m in pipelines.items()
        }
        for mode, rates in (("iterate", iterate), ("train", train)):
            mine, seed = rates["trainer"], rates["seed"]
            print(f"{size:>5} {mode:<8} {mine:>13,.0f} {seed:>11,.0f} {mine / seed:>5.1f}x")


if __name__ == "__main__":
    main()
