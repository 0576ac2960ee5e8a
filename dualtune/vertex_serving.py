"""`dualtune deploy --backend vertex` and `dualtune predict --backend vertex`: a finalized
model's Vertex Model Registry version on a Vertex endpoint (backends/vertex/endpoints.py).

Which version: the one `finalize --backend vertex` uploaded, named on its MLflow finalize run
(mlflow_layout.VERTEX_MODEL, VERTEX_MODEL_VERSION); by default the latest finalized MLflow
version that has one. Where: the endpoint displayed as --endpoint (default: the space's name),
created the first time. deploy remembers the endpoint in the study's folder
(VERTEX_DEPLOYMENT_FILE), where predict finds it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dualtune import mlflow_layout as layout
from dualtune.served_model import ServedModel, finalized_model
from dualtune.study_record import StudyRecord, write_json_atomic
from trialkit.errors import UserError

VERTEX_DEPLOYMENT_FILE = "vertex_deployment.json"


def vertex_version(mlflow_client: Any, study: str, version: str | None) -> tuple[ServedModel, str]:
    """(the MLflow model version, its Vertex model@version): `version`, else the latest that
    finalize uploaded to the Vertex Model Registry; one line when there is none."""
    model = finalized_model(mlflow_client, study, version)  # none at all: its own one line
    candidates = [model.version] if version else _versions_newest_first(mlflow_client, study)
    for candidate in candidates:
        chosen = model if candidate == model.version else None
        chosen = chosen or finalized_model(mlflow_client, study, candidate)
        vertex = layout.vertex_model_of(mlflow_client.get_run(chosen.run_id))
        if vertex:
            return chosen, vertex
    which = f"model version {version}" if version else "no finalized model"
    raise UserError(
        f"study {study}: {which} was uploaded to the Vertex Model Registry; run "
        f"`dualtune finalize --backend vertex --study {study}` first"
    )


def _versions_newest_first(mlflow_client: Any, study: str) -> list[str]:
    found = mlflow_client.search_model_versions(f"name = '{study}'")
    return [str(v) for v in sorted((int(v.version) for v in found), reverse=True)]


def deploy_vertex(
    record: StudyRecord,
    backend: Any,
    model: ServedModel,
    vertex: str,
    options: dict[str, Any],
    say: Callable[[str], None],
) -> int:
    """Deploy `vertex` (model@version) as `options` say (the vertex backend's deploy_model);
    print how to ask it, and remember the endpoint for predict."""
    say(f"deploying Vertex model {vertex} (MLflow {model.name} version {model.version})")
    labels = {"dualtune-study": record.name}
    done = backend.deploy_model(vertex, labels=labels, example=model.example, **options)
    verb = "created" if done.created else "found"
    say(f"endpoint {done.endpoint} ({verb}); deployed model {done.deployed_model_id}")
    say(f"traffic split: {json.dumps(done.traffic_split, sort_keys=True)}")
    write_json_atomic(
        record.path / VERTEX_DEPLOYMENT_FILE,
        {"backend": "vertex", "endpoint": done.endpoint, "model": vertex,
         "deployedModelId": done.deployed_model_id, "mlflowVersion": model.version},
    )  # fmt: skip
    say(f"ready. {done.examples}")
    say(f"or: dualtune predict --backend vertex --study {record.name} --instances FILE.csv")
    return 0


def deployed_endpoint(
    record: StudyRecord, backend: Any, endpoint_id: str | None, name: str | None
) -> str:
    """The endpoint to ask: --endpoint-id, else the one displayed as --endpoint, else the one
    deploy recorded for the study."""
    if endpoint_id or name:
        found = backend.find_endpoint(name or "", endpoint_id)
        if found is None:
            raise UserError(
                f"--endpoint {name}: no endpoint carries that display name; deploy first "
                f"(`dualtune deploy --backend vertex --endpoint {name}`)"
            )
        return found
    try:
        return json.loads((record.path / VERTEX_DEPLOYMENT_FILE).read_text())["endpoint"]
    except (OSError, ValueError, KeyError):
        raise UserError(
            f"study {record.name}: not deployed on Vertex from here; run `dualtune deploy "
            f"--backend vertex --study {record.name}` first, or pass --endpoint-id ID"
        ) from None


def vertex_backend(record: StudyRecord, settings: Any) -> tuple[Any, str]:
    """(the vertex backend of `settings`, completed by what the study recorded; the space's
    name): where the study's models live unless flags say otherwise."""
    from dualtune.api import _recorded_settings, backend_of
    from dualtune.overrides import recorded_space

    meta = record.meta()
    found, settings = backend_of(settings)
    backend = found.build(settings.resolve(_recorded_settings(meta, found.name)))
    return backend, recorded_space(record.space_file, meta).name
