"""Per-epoch checkpoints: the full model (weights and optimizer state) as epoch-NNNN.keras.

Each one is written under a hidden temporary name and renamed into place, so a crash leaves
either the previous state or the new one; only the latest `keep` are kept. Next to them,
trial.json records the hyperparameters that produced them, so a resumed run refuses a
checkpoint directory that belongs to a different trial. Paths go through tf.io.gfile (gs:// works).
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainer.errors import TrainerError

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^epoch-(\d+)\.keras$")
TRIAL_FILE = "trial.json"


@dataclass(frozen=True)
class Checkpoint:
    epoch: int  # 1-based number of the last epoch it holds
    path: str


def checkpoint_path(directory: str, epoch: int) -> str:
    return posixpath.join(directory, f"epoch-{epoch:04d}.keras")


def list_checkpoints(directory: str) -> list[Checkpoint]:
    """The complete checkpoints in `directory`, oldest first ([] if it does not exist)."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(directory):
        return []
    found = []
    for name in tf.io.gfile.listdir(directory):
        match = _NAME.match(name.rstrip("/"))
        if match:
            found.append(Checkpoint(int(match.group(1)), posixpath.join(directory, name)))
    return sorted(found, key=lambda c: c.epoch)


def latest_checkpoint(directory: str) -> Checkpoint | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def save_atomically(model: keras.Model, path: str) -> None:
    """model.save to a hidden sibling, then rename: readers never see a partial file."""
    import tensorflow as tf

    directory, name = posixpath.split(path)
    tf.io.gfile.makedirs(directory)
    partial = posixpath.join(directory, f".partial-{name}")
    model.save(partial)
    tf.io.gfile.rename(partial, path, overwrite=True)


def copy_atomically(source: str, path: str) -> None:
    """Copy `source` to a hidden sibling of `path`, then rename it into place."""
    import tensorflow as tf

    directory, name = posixpath.split(path)
    tf.io.gfile.makedirs(directory)
    partial = posixpath.join(directory, f".partial-{name}")
    tf.io.gfile.copy(source, partial, overwrite=True)
    tf.io.gfile.rename(partial, path, overwrite=True)


def save_checkpoint(model: keras.Model, directory: str, epoch: int, keep: int = 2) -> str:
    """Save epoch `epoch` (1-based) and delete all but the latest `keep` checkpoints."""
    import tensorflow as tf

    path = checkpoint_path(directory, epoch)
    save_atomically(model, path)
    for old in list_checkpoints(directory)[:-keep]:
        tf.io.gfile.remove(old.path)
    return path


def claim_directory(directory: str, trial: dict[str, Any]) -> None:
    """Record `trial` in the directory, or check that it matches the one recorded there."""
    import tensorflow as tf

    tf.io.gfile.makedirs(directory)
    path = posixpath.join(directory, TRIAL_FILE)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as handle:
            recorded = json.load(handle)
        changed = sorted(k for k in set(recorded) | set(trial) if recorded.get(k) != trial.get(k))
        if changed and list_checkpoints(directory):
            raise TrainerError(
                f"{directory} holds checkpoints of another trial (different {', '.join(changed)}); "
                "use an empty checkpoint directory"
            )
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(trial, handle, indent=1, sort_keys=True)
