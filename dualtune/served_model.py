"""Which finalized model to serve or ask, and what a request to it carries.

`dualtune finalize` registers each finalized model in MLflow under the study's name (one
version per finalize). deploy and predict both start here: the study's latest version unless
one is named, its feature columns from the logged signature, and a real example row from the
features.json logged beside it (dualtune/model_export.py).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trialkit.errors import UserError

FEATURES = "model/artifacts/features.json"


@dataclass(frozen=True)
class ServedModel:
    """One registered model version and the columns a request to it must carry."""

    name: str
    version: str
    run_id: str
    columns: tuple[str, ...]
    example: dict[str, Any]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def finalized_model(mlflow_client: Any, study: str, version: str | None = None) -> ServedModel:
    """The study's finalized model: `version`, else its latest; a one-line error when there is
    none yet (the fix: `dualtune finalize`)."""
    found = mlflow_client.search_model_versions(f"name = '{study}'")
    if not found:
        raise UserError(
            f"study {study}: no finalized model yet; run `dualtune finalize --study {study}` first"
        )
    by_version = {str(v.version): v for v in found}
    if version is None:
        chosen = max(found, key=lambda v: int(v.version))
    elif version in by_version:
        chosen = by_version[version]
    else:
        raise UserError(
            f"--model-version: study {study} has no model version {version}; it has "
            f"{', '.join(sorted(by_version, key=int))}"
        )
    return _described(mlflow_client, study, str(chosen.version), chosen.run_id)


def _described(mlflow_client: Any, name: str, version: str, run_id: str) -> ServedModel:
    from mlflow.models import Model

    with tempfile.TemporaryDirectory() as tmp:  # two small files, not the whole model
        logged = Model.load(mlflow_client.download_artifacts(run_id, "model/MLmodel", tmp))
        try:
            features = mlflow_client.download_artifacts(run_id, FEATURES, tmp)
        except Exception:  # noqa: BLE001 - a model logged without one: no example row
            examples = []
        else:
            examples = json.loads(Path(features).read_text()).get("examples") or []
    if logged.signature is None:
        raise UserError(
            f"model {name} version {version} has no signature (finalized by an older "
            f"dualtune); run `dualtune finalize --study {name}` again"
        )
    columns = tuple(logged.signature.inputs.input_names())
    types = {c.name: str(c.type) for c in logged.signature.inputs.inputs}
    example = examples[0] if examples else {c: _blank(types[c]) for c in columns}
    return ServedModel(name, version, run_id, columns, example)


def _blank(column_type: str) -> Any:
    return "" if "string" in column_type else 0
