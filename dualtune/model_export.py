"""The finalized model as MLflow logs it: a pyfunc (dualtune/serving_model.py, logged as code)
over the trainer's model.keras, with a signature of the trainer's feature columns and a few
real rows as its input example, so `mlflow.pyfunc.load_model(...).predict(rows)` and
`mlflow models serve` take raw feature rows, strings included.

The columns come from the trainer: features.json beside model.keras (written by the example
trainer: each feature's name and dtype as its data files hold it, and a few sample rows). A
trainer that writes none gets columns derived from the Keras model's own inputs, and no
example.
"""

from __future__ import annotations

import json
import logging
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

from trialkit.errors import UserError

log = logging.getLogger(__name__)

SERVING_CODE = Path(__file__).with_name("serving_model.py")
FEATURES_FILE = "features.json"
# features.json dtypes -> MLflow column types. Integers stay integers: MLflow refuses to cast
# int64 to double, so a column the data files hold as whole numbers is declared `long`.
COLUMN_TYPES = {"int64": "long", "float64": "double", "float32": "float", "string": "string"}


def feature_spec(model_dir: Path, model: Any) -> dict[str, Any]:
    """The trainer's features.json, checked; else columns derived from the model's inputs."""
    path = model_dir / FEATURES_FILE
    if not path.is_file():
        return {"columns": _derived_columns(model), "examples": []}
    spec = json.loads(path.read_text())
    columns = spec.get("columns") or []
    for column in columns:
        if column.get("dtype") not in COLUMN_TYPES:
            raise UserError(
                f"{path}: column {column.get('name')!r} has dtype {column.get('dtype')!r}; "
                f"a trainer must write one of {', '.join(COLUMN_TYPES)}"
            )
    if not columns:
        raise UserError(f"{path}: no columns; a trainer must list its feature columns there")
    return {"columns": columns, "examples": list(spec.get("examples") or [])}


def _derived_columns(model: Any) -> list[dict[str, str]]:
    inputs = list(model.inputs)
    if all(tuple(t.shape[1:]) == (1,) for t in inputs):
        return [{"name": t.name, "dtype": _dtype(t.dtype)} for t in inputs]
    if len(inputs) == 1 and len(inputs[0].shape) == 2:
        (only,) = inputs
        return [{"name": f"{only.name}_{i}", "dtype": "float64"} for i in range(only.shape[1])]
    raise UserError(
        "model.keras: its inputs are not one column each nor a single (batch, n) input; "
        f"the trainer must write {FEATURES_FILE} beside it naming the feature columns"
    )


def _dtype(keras_dtype: str) -> str:
    return "string" if keras_dtype == "string" else "float64"


def save_pyfunc(model_dir: Path, target: Path) -> None:
    """Write the servable MLflow model for `model_dir` (holding model.keras) at `target`."""
    import keras
    import mlflow.pyfunc

    keras_file = model_dir / "model.keras"
    model = keras.saving.load_model(keras_file, compile=False)
    spec = feature_spec(model_dir, model)
    with tempfile.TemporaryDirectory() as tmp:
        features = Path(tmp) / FEATURES_FILE
        features.write_text(json.dumps(spec, indent=1))
        mlflow.pyfunc.save_model(
            path=str(target),
            python_model=str(SERVING_CODE),
            artifacts={"keras_model": str(keras_file), "features": str(features)},
            signature=_signature(model, spec),
            input_example=_frame(spec["examples"], spec["columns"]) if spec["examples"] else None,
            pip_requirements=[
                f"{name}=={version(name)}"
                for name in ("mlflow", "keras", "tensorflow", "pandas", "numpy")
            ],
        )


def _signature(model: Any, spec: dict[str, Any]) -> Any:
    """Inputs: the feature columns and their types; outputs: what the pyfunc returns for a row."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    from dualtune.serving_model import model_inputs, output_frame

    columns = spec["columns"]
    inputs = Schema([ColSpec(COLUMN_TYPES[c["dtype"]], c["name"]) for c in columns])
    rows = spec["examples"] or [{c["name"]: "" if c["dtype"] == "string" else 0 for c in columns}]
    frame = _frame(rows, columns)
    outputs = output_frame(model, model.predict(model_inputs(model, frame, list(frame)), verbose=0))
    return ModelSignature(inputs=inputs, outputs=infer_signature(model_output=outputs).outputs)


def _frame(rows: list[dict[str, Any]], columns: list[dict[str, str]]) -> Any:
    """Rows as a DataFrame whose column types are the declared ones."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=[c["name"] for c in columns])
    types = {c["name"]: (object if c["dtype"] == "string" else c["dtype"]) for c in columns}
    return frame.astype(types)
