"""Per-epoch scalars for TensorBoard, written with TensorFlow alone.

keras.callbacks.TensorBoard needs the tensorboard package, which TensorFlow no longer installs;
tf.summary.write with the scalars plugin's metadata produces the same event files (train/ and
validation/ runs, tags epoch_<metric>), which TensorBoard and Vertex AI TensorBoard read.
"""

from __future__ import annotations

import posixpath
from typing import Any


class EpochSummaries:
    """Writes each epoch's metrics under <log_dir>/train and <log_dir>/validation."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self._writers: dict[str, Any] = {}

    def _writer(self, run: str) -> Any:
        import tensorflow as tf

        if run not in self._writers:
            path = posixpath.join(self.log_dir, run)
            self._writers[run] = tf.summary.create_file_writer(path)
        return self._writers[run]

    def write(self, epoch: int, logs: dict[str, float]) -> None:
        """Write `logs` (Keras epoch logs; val_* go to validation/) at step `epoch`."""
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        )
        for name, value in logs.items():
            run, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            writer = self._writer(run)
            with writer.as_default():
                tf.summary.write(f"epoch_{tag}", tf.constant(float(value)), epoch, metadata)
        for writer in self._writers.values():
            writer.flush()
