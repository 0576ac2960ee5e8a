"""A SavedModel's serving_default on Vertex instances, as the prebuilt TensorFlow container
(TensorFlow Serving's REST "row" format) runs it.

Each instance is a dict of input name -> that input's value for one row (for an input of shape
(None, 1), a one-element list); a signature with one input also takes bare values. The rows
are stacked along the batch axis, so every instance needs every input with the row's shape;
otherwise the answer is a 400, as TensorFlow Serving's "Failed to process element" is.
Predictions: one per instance, the output's row when there is one output, else a dict.
"""

from __future__ import annotations

from typing import Any

from vertex_emulator.errors import ApiError


def refused(message: str) -> ApiError:
    """A request the model server refuses: Vertex answers 400 FAILED_PRECONDITION."""
    return ApiError(400, message, "FAILED_PRECONDITION")


def run_signature(signature: Any, instances: list[Any]) -> list[Any]:
    """The predictions of `signature` (a concrete function) for `instances`."""
    import tensorflow as tf

    specs = signature.structured_input_signature[1]
    rows = [_as_row(instance, specs, number) for number, instance in enumerate(instances)]
    feed = {name: _stack(name, spec, [row[name] for row in rows]) for name, spec in specs.items()}
    try:
        outputs = signature(**{name: tf.constant(value) for name, value in feed.items()})
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
        raise refused(f"Failed to run the model: {str(err).splitlines()[0]}") from err
    columns = {name: _plain(tensor.numpy().tolist()) for name, tensor in outputs.items()}
    if len(columns) == 1:
        return next(iter(columns.values()))
    return [{name: values[i] for name, values in columns.items()} for i in range(len(rows))]


def _as_row(instance: Any, specs: dict, number: int) -> dict:
    if not isinstance(instance, dict):
        if len(specs) == 1:
            return {next(iter(specs)): instance}
        raise refused(
            f"Failed to process element: {number} of 'instances' list. Error: Invalid argument: "
            f"expected a JSON object with the model's named inputs: {', '.join(sorted(specs))}"
        )
    for name in instance:
        if name not in specs:
            raise refused(
                f"Failed to process element: {number} key: {name} of 'instances' list. Error: "
                f"Invalid argument: JSON object: does not have named input: {name}"
            )
    for name in specs:
        if name not in instance:
            raise refused(
                f"Failed to process element: {number} of 'instances' list. Error: Invalid "
                f"argument: JSON object: missing named input: {name}"
            )
    return instance


def _stack(name: str, spec: Any, values: list[Any]) -> Any:
    """The rows of one input as an array of the signature's dtype and row shape."""
    import numpy as np

    try:
        if spec.dtype.name == "string":
            array = np.array(values, dtype=object)
            if not all(isinstance(v, str) for v in array.reshape(-1)):
                raise TypeError("expected strings")
        else:
            array = np.array(values, dtype=spec.dtype.as_numpy_dtype)
    except (TypeError, ValueError) as err:
        raise refused(
            f"Failed to process input {name} of 'instances' list. Error: Invalid argument: "
            f"{err}; {name} takes {spec.dtype.name} values"
        ) from err
    row_shape = list(spec.shape)[1:]
    have = list(array.shape[1:])
    if len(have) != len(row_shape) or any(
        want is not None and want != got for want, got in zip(row_shape, have, strict=True)
    ):
        raise refused(
            f"Failed to process input {name} of 'instances' list. Error: Invalid argument: "
            f"each instance's {name} must have shape {row_shape}, not {have}"
        )
    return array


def _plain(values: Any) -> Any:
    """JSON-ready: bytes (string outputs) as text."""
    if isinstance(values, list):
        return [_plain(v) for v in values]
    return values.decode() if isinstance(values, bytes) else values
