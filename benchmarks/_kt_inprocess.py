"""Plain Keras Tuner, in process: the baseline of benchmarks/overhead.py.

kt.RandomSearch over the flights space's HyperParameters (search_spaces' compiler), with a
HyperModel that builds trainer.model.build_model and fits it on trainer.data's pipelines with the
trainer's seed and batch sizes; the CSVs are read once for the whole search, as an in-process
user would. Importing this module imports TensorFlow, Keras and Keras Tuner.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _common
import keras
import keras_tuner as kt

from search_spaces.keras_tuner_compiler import to_hyperparameters
from trainer import data
from trainer.flags import hidden_units
from trainer.model import ModelParams, build_model

TRAINER_SEED = 42  # the trainer's --seed default
EVAL_BATCH = 1024  # the trainer's --eval_batch_size default


class EpochClock(keras.callbacks.Callback):
    """Records when each epoch ended (time.time(), as cloudml-hypertune stamps its reports)."""

    def __init__(self, record: _common.TrialRecord) -> None:
        super().__init__()
        self.record = record

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.record.steps.append(epoch + 1)
        self.record.values.append(float((logs or {}).get("val_rmse", float("nan"))))
        self.record.times.append(time.time())


class FlightsHyperModel(kt.HyperModel):
    """trainer.task's model and input pipeline, in process: data read once, a model per trial."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        from trainer.embedded import ensure_data

        paths = ensure_data()
        self.args = args
        self.frame = data.read_csv(str(paths["train"]))
        self.stats = data.compute_stats(self.frame)
        self.eval_frame = data.sample_rows(  # the trainer's own validation sample
            data.read_csv(str(paths["eval"])), args.num_eval_examples, args.eval_sample_seed
        )
        self.records: list[_common.TrialRecord] = []

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        keras.utils.set_random_seed(TRAINER_SEED)
        params = ModelParams(
            hp.get("nbuckets"),
            hp.get("nembeds"),
            hidden_units(hp.get("dnn_hidden_units")),
            hp.get("learning_rate"),
        )
        return build_model(params, self.stats)

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, **kwargs):
        batch_size = hp.get("train_batch_size")
        record = _common.TrialRecord(str(len(self.records)), dict(hp.values))
        self.records.append(record)
        callbacks = [*kwargs.get("callbacks", []), EpochClock(record)]
        return model.fit(
            data.train_dataset(self.frame, batch_size, TRAINER_SEED),
            epochs=self.args.num_epochs,
            steps_per_epoch=self.args.num_examples // batch_size,
            validation_data=data.eval_dataset(self.eval_frame, EVAL_BATCH),
            shuffle=False,
            callbacks=callbacks,
            verbose=0,
        )


class RandomSearch(kt.RandomSearch):
    """kt.RandomSearch, minus one import: Keras Tuner 1.4.8 imports tensorboard in every trial
    (Tuner._configure_tensorboard_dir) to patch TensorBoard callbacks; TensorFlow 2.21 no
    longer installs tensorboard, so every trial would fail. We pass no TensorBoard callback, so
    the method has nothing to do."""

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        return None


def run(args: argparse.Namespace, space, workdir: Path, label: str) -> _common.StudyResult:
    """The same study as Keras Tuner runs it in process; wall time includes reading the data."""
    start = time.perf_counter()
    hypermodel = FlightsHyperModel(args)
    tuner = RandomSearch(
        hypermodel,
        objective=kt.Objective(space.metric.tag, "min"),
        max_trials=args.trials,
        seed=args.seed,
        hyperparameters=to_hyperparameters(space),
        tune_new_entries=False,
        allow_new_entries=False,
        directory=str(workdir),
        project_name="kt",
        overwrite=True,
    )
    tuner.search(verbose=0)
    wall = time.perf_counter() - start
    for record in hypermodel.records:
        record.status = "COMPLETED" if record.steps else "FAILED"
    best = tuner.oracle.get_best_trials(1)
    value = best[0].score if best else None
    return _common.StudyResult(label, wall, hypermodel.records, "COMPLETED", value)
