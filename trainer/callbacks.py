"""What happens at each epoch's end: checkpoint, report, TensorBoard, log; and graceful stops.

A complete, finite epoch is checkpointed first and then reported (with its checkpoint path), so
every reported epoch can be resumed from. An epoch cut short by SIGTERM, or with a NaN loss, is
neither checkpointed nor reported.
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras

from trainer.checkpoints import save_checkpoint
from trainer.summaries import EpochSummaries

logger = logging.getLogger(__name__)

METRIC_TAG = "val_rmse"


class SigtermFlag:
    """Set by SIGTERM; also stops the model it watches at the end of the current batch."""

    def __init__(self) -> None:
        self.raised = False
        self.model: keras.Model | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.raised = True
        if self.model is not None:
            self.model.stop_training = True


@contextmanager
def sigterm_flag() -> Iterator[SigtermFlag]:
    """Catch SIGTERM for the duration of the block instead of dying."""
    flag = SigtermFlag()
    previous = signal.signal(signal.SIGTERM, flag)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


class TrialCallback(keras.callbacks.Callback):
    """Checkpoints and reports every complete epoch; notices SIGTERM and NaN losses."""

    def __init__(
        self, checkpoint_dir: str, log_dir: str, hypertune: Any, flag: SigtermFlag
    ) -> None:
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.summaries = EpochSummaries(log_dir)
        self.hypertune = hypertune
        self.flag = flag
        self.last_epoch: int | None = None  # 1-based number of the last complete epoch saved
        self.nan_epoch: int | None = None
        self._start_step = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.flag.model = self.model
        if self.flag.raised:  # SIGTERM before training started
            self.model.stop_training = True

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start_step = int(self.model.optimizer.iterations)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        steps = int(self.model.optimizer.iterations) - self._start_step
        if steps < self.params["steps"]:  # cut short by SIGTERM: not a complete epoch
            return
        if not math.isfinite(logs.get("loss", math.nan)):
            self.nan_epoch = epoch + 1
            self.model.stop_training = True
            return
        path = save_checkpoint(self.model, self.checkpoint_dir, epoch + 1)
        self.last_epoch = epoch + 1
        self.summaries.write(epoch + 1, logs)
        value = logs[METRIC_TAG]
        self.hypertune.report_hyperparameter_tuning_metric(
            hyperparameter_metric_tag=METRIC_TAG,
            metric_value=value,
            global_step=epoch + 1,
            checkpoint_path=path,
        )
        extras = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()) if k != METRIC_TAG)
        logger.info("epoch %d %s %.6f (%s)", epoch + 1, METRIC_TAG, value, extras)
