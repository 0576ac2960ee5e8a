"""`dualtune predict`: send instances (a CSV or JSON file) to a served model, print predictions.

The instances are read and checked against the model's signature here, before anything is
sent: a missing or an extra feature column is one line naming it. Where they go is a Target:
today the local MLflow scoring server `dualtune deploy --backend local` runs; a Vertex endpoint
(`aiplatform.Endpoint.predict`) is a second Target with the same predict(rows) method.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trialkit.errors import DualtuneError, UserError

REQUEST_TIMEOUT_S = 120.0


class Target(Protocol):
    """Where predictions come from: rows of raw features in, one prediction per row out."""

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]: ...


@dataclass(frozen=True)
class MlflowServer:
    """A running `mlflow models serve` (what deploy --backend local starts)."""

    url: str

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        body = json.dumps({"dataframe_records": rows}).encode()
        request = urllib.request.Request(
            f"{self.url.rstrip('/')}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
                return json.loads(answer.read())["predictions"]
        except urllib.error.HTTPError as exc:
            raise UserError(f"the model server refused the instances: {_message(exc)}") from None
        except OSError as exc:
            raise DualtuneError(
                f"{self.url}: no model server answers ({getattr(exc, 'reason', exc)}); start "
                f"one with `dualtune deploy` or pass --url"
            ) from None


def _message(error: urllib.error.HTTPError) -> str:
    text = error.read().decode(errors="replace")
    try:
        text = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        pass
    return " ".join(str(text).split())[:500]


def read_instances(path: Path) -> list[dict[str, Any]]:
    """Rows from a CSV file (a header, one row per instance) or a JSON file (a list of records,
    or {"instances": [...]}, Vertex's request shape)."""
    if not path.is_file():
        raise UserError(f"--instances: no file {path}; give a CSV or JSON file of instances")
    if path.suffix.lower() == ".csv":
        import pandas as pd

        try:
            rows = json.loads(pd.read_csv(path).to_json(orient="records"))
        except (ValueError, pd.errors.ParserError) as exc:
            raise UserError(f"--instances: {path} is not a readable CSV ({exc})") from None
    else:
        try:
            rows = json.loads(path.read_text())
        except ValueError as exc:
            raise UserError(
                f"--instances: {path} is not JSON ({exc}); give a .csv or a JSON list of records"
            ) from None
        if isinstance(rows, dict) and "instances" in rows:
            rows = rows["instances"]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise UserError(
            f"--instances: {path} holds no instances; write a list of records "
            f'([{{"column": value, ...}}]) or {{"instances": [...]}}'
        )
    return rows


def check_instances(rows: list[dict[str, Any]], columns: tuple[str, ...], source: Path) -> None:
    """Every row carries exactly the model's feature columns; else one line naming the first
    column that is missing or extra."""
    wanted = set(columns)
    for number, row in enumerate(rows, start=1):
        missing = [c for c in columns if c not in row]
        if missing:
            raise UserError(
                f"--instances: {source}: instance {number} lacks feature column {missing[0]!r}; "
                f"every instance needs the model's columns: {', '.join(columns)}"
            )
        extra = [c for c in row if c not in wanted]
        if extra:
            raise UserError(
                f"--instances: {source}: instance {number} has column {extra[0]!r}, which the "
                f"model does not take; remove it (the model's columns: {', '.join(columns)})"
            )


def prediction_lines(predictions: list[Any]) -> list[str]:
    """One line per prediction: a lone value as is, anything wider as JSON."""
    lines = []
    for prediction in predictions:
        if isinstance(prediction, dict) and len(prediction) == 1:
            (prediction,) = prediction.values()
        if isinstance(prediction, list) and len(prediction) == 1:
            (prediction,) = prediction
        lines.append(
            str(prediction) if not isinstance(prediction, (dict, list)) else json.dumps(prediction)
        )
    return lines


def predict(target: Target, rows: list[dict[str, Any]]) -> list[str]:
    """The target's predictions for the rows, as printable lines; one per row."""
    predictions = target.predict(rows)
    if len(predictions) != len(rows):
        raise DualtuneError(f"{len(rows)} instances sent, {len(predictions)} predictions back")
    return prediction_lines(predictions)
