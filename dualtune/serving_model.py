"""The MLflow pyfunc that serves a finalized Keras model from rows of raw features.

MLflow logs this file as code ("models from code"): it is copied into the logged model and run
when the model loads, so loading needs MLflow, Keras and pandas, never dualtune. That is also
why it imports nothing of ours and imports MLflow at the top (set_model needs the class).

Two artifacts travel with it: the Keras model (model.keras) and features.json, the columns a
request carries ({"columns": [{"name": ..., "dtype": "int64" | "float64" | "string"}]}). A
model with one named (batch, 1) input per column (the flights model) gets a dict of column
tensors; a model with one input gets the columns side by side as one (batch, columns) tensor.
Each input is cast to the dtype the model declares for it (strings stay strings).
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

KERAS_MODEL = "keras_model"  # the artifacts' keys, shared with dualtune/model_export.py
FEATURES = "features"


class KerasFeaturesModel(PythonModel):
    """Raw feature rows (a DataFrame) in, one column of predictions per model output out."""

    def load_context(self, context: Any) -> None:
        import keras

        self.model = keras.saving.load_model(context.artifacts[KERAS_MODEL], compile=False)
        with open(context.artifacts[FEATURES]) as handle:
            self.columns = [c["name"] for c in json.load(handle)["columns"]]

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        outputs = self.model.predict(model_inputs(self.model, frame, self.columns), verbose=0)
        return output_frame(self.model, outputs)


def model_inputs(model: Any, frame: pd.DataFrame, columns: list[str]) -> Any:
    """The model's inputs from the frame's columns: a dict of (rows, 1) tensors when every
    column names an input, else the columns stacked into the model's one input."""
    import tensorflow as tf

    inputs = {tensor.name: tensor for tensor in model.inputs}
    if set(columns) <= set(inputs):
        return {name: _tensor(frame[[name]], inputs[name].dtype, tf) for name in columns}
    (only,) = model.inputs
    return _tensor(frame[columns], only.dtype, tf)


def _tensor(frame: pd.DataFrame, dtype: str, tf: Any) -> Any:
    if dtype == "string":
        return tf.constant(frame.astype(str).to_numpy(dtype=object))
    return tf.constant(frame.to_numpy(dtype=np.dtype(dtype)))


def output_frame(model: Any, outputs: Any) -> pd.DataFrame:
    """One column per output value: the output's name, or name_i for a wide output."""
    if isinstance(outputs, dict):
        named = outputs
    else:
        listed = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        named = dict(zip(_output_names(model, len(listed)), listed, strict=True))
    columns: dict[str, np.ndarray] = {}
    for name, values in named.items():
        values = np.asarray(values).reshape(len(values), -1)
        if values.shape[1] == 1:
            columns[name] = values[:, 0]
        else:
            columns.update({f"{name}_{i}": values[:, i] for i in range(values.shape[1])})
    return pd.DataFrame(columns)


def _output_names(model: Any, count: int) -> list[str]:
    """A functional model's own output names; "prediction" (or prediction_i) for a Sequential."""
    names = getattr(model, "output_names", None)
    if names and len(names) == count:
        return list(names)
    return ["prediction"] if count == 1 else [f"prediction_{i}" for i in range(count)]


mlflow.models.set_model(KerasFeaturesModel())
