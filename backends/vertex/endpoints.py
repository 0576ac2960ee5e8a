"""A Vertex endpoint serving a registered model version, through the real SDK: the endpoint is
found by display name (or id) or created, the version deployed beside what is there already
(aiplatform.Model.deploy: the new model takes traffic_percentage and the models already
deployed share the rest in their old proportions), and nothing is undeployed unless asked.

Also the other way round: predictions from an endpoint (EndpointTarget), one per instance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from backends.vertex.session import VertexSession
from trialkit.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeployRequest:
    """Which model version goes where, on what machines, with how much of the traffic."""

    model: str  # projects/P/locations/L/models/ID
    version: str
    endpoint_name: str  # display name, found or created
    endpoint_id: str | None = None  # an existing endpoint's id or resource name (wins)
    traffic_percent: int = 100
    machine_type: str = "n1-standard-2"
    min_replicas: int = 1
    max_replicas: int = 1
    undeploy_others: bool = False
    labels: dict[str, str] | None = None
    example: dict[str, Any] | None = None  # a raw feature row for the printed request examples

    def __post_init__(self) -> None:
        if not 0 <= self.traffic_percent <= 100:
            raise UserError(f"--traffic-percent {self.traffic_percent}: give 0 to 100")
        if self.min_replicas < 1 or self.max_replicas < self.min_replicas:
            raise UserError(
                f"--min-replicas {self.min_replicas} / --max-replicas {self.max_replicas}: "
                f"give at least 1, and a max no smaller than the min"
            )


@dataclass(frozen=True)
class Deployed:
    """Where the model now serves."""

    endpoint: str  # the endpoint's resource name
    deployed_model_id: str
    traffic_split: dict[str, int]
    created: bool  # the endpoint was made by this deploy
    predict_url: str  # the REST :predict URL
    examples: str  # a ready-to-run SDK snippet and curl line


def find_endpoint(session: VertexSession, name: str, endpoint_id: str | None = None) -> Any:
    """The endpoint `endpoint_id` names, else the one displayed as `name` (None: there is none).
    Two with that display name: one line naming both, and the fix."""
    from google.api_core import exceptions
    from google.cloud import aiplatform

    session.api()
    where = {"project": session.project, "location": session.region}
    if endpoint_id:
        try:
            with session.explain(f"reading endpoint {endpoint_id}"):
                return aiplatform.Endpoint(endpoint_id, credentials=session.credentials, **where)
        except exceptions.NotFound:
            raise UserError(
                f"--endpoint-id {endpoint_id}: no such endpoint in project {session.project}, "
                f"region {session.region}; leave it out to find or create one by display name"
            ) from None
    with session.explain(f"listing the endpoints named {name}"):
        found = aiplatform.Endpoint.list(
            filter=f'display_name="{name}"', credentials=session.credentials, **where
        )
    if len(found) > 1:
        names = ", ".join(e.resource_name for e in found)
        raise UserError(
            f"--endpoint {name}: {len(found)} endpoints carry that display name ({names}); "
            f"pick one with --endpoint-id ID"
        )
    return found[0] if found else None


def deploy_version(session: VertexSession, request: DeployRequest) -> Deployed:
    """Deploy the model version to the endpoint (found or created); see the module's note."""
    from google.cloud import aiplatform

    endpoint = find_endpoint(session, request.endpoint_name, request.endpoint_id)
    where = {"project": session.project, "location": session.region}
    created = endpoint is None
    if created:
        with session.explain(f"creating endpoint {request.endpoint_name}"):
            endpoint = aiplatform.Endpoint.create(
                display_name=request.endpoint_name,
                labels=request.labels,
                credentials=session.credentials,
                **where,
            )
    before = {d.id for d in endpoint.list_models()}
    if not before and request.traffic_percent != 100:
        raise UserError(
            f"--traffic-percent {request.traffic_percent}: endpoint {endpoint.resource_name} "
            f"serves no model yet, so this one takes all traffic; leave --traffic-percent out"
        )
    model = aiplatform.Model(
        request.model, version=request.version, credentials=session.credentials, **where
    )
    with session.explain(f"deploying {request.model}@{request.version}"):
        model.deploy(
            endpoint=endpoint,
            traffic_percentage=request.traffic_percent,
            machine_type=request.machine_type,
            min_replica_count=request.min_replicas,
            max_replica_count=request.max_replicas,
            sync=True,
        )
        endpoint = aiplatform.Endpoint(endpoint.resource_name, credentials=session.credentials)
        (new,) = [d.id for d in endpoint.list_models() if d.id not in before]
        if request.undeploy_others:
            for other in sorted(before):
                endpoint.undeploy(other)
    url = predict_url(session, endpoint.resource_name)
    examples = request_examples(session, endpoint.resource_name, url, request.example or {})
    return Deployed(
        endpoint.resource_name, new, dict(endpoint.traffic_split), created, url, examples
    )


def predict_url(session: VertexSession, endpoint: str) -> str:
    """The endpoint's REST :predict URL (the emulator's, or the regional Vertex host)."""
    host = session.api_endpoint or f"https://{session.region}-aiplatform.googleapis.com"
    return f"{host.rstrip('/')}/v1/{endpoint}:predict"


def request_examples(session: VertexSession, endpoint: str, url: str, row: dict) -> str:
    """A ready-to-run SDK snippet and curl line asking the endpoint about `row`."""
    import json
    import shlex

    rows = instances([row])
    token = (
        f"$(cat {shlex.quote(session.token_file)})"
        if session.token_file
        else "$(gcloud auth print-access-token)"
    )
    init = f'aiplatform.init(project="{session.project}", location="{session.region}"'
    if session.api_endpoint:
        init += f', api_endpoint="{session.api_endpoint}", api_transport="rest"'
    credentials = []  # Google's: application default credentials, nothing to say
    if session.token_file:  # a service of its own (the emulator): its bearer token, read here
        credentials = [
            "  from google.oauth2.credentials import Credentials",
            f"  token = open({json.dumps(session.token_file)}).read().strip()",
        ]
        init += ", credentials=Credentials(token)"
    body = json.dumps({"instances": rows})
    return "\n".join(
        [
            "Ask it from Python:",
            "  from google.cloud import aiplatform",
            *credentials,
            f"  {init})",
            f'  endpoint = aiplatform.Endpoint("{endpoint}")',
            f"  print(endpoint.predict(instances={json.dumps(rows)}).predictions)",
            "or with curl:",
            f'  curl -s -X POST {url} -H "Authorization: Bearer {token}" '
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)}",
        ]
    )


@dataclass(frozen=True)
class EndpointTarget:
    """A Vertex endpoint as a predict target (dualtune/predict.py's Target): raw feature rows
    in, sent as the prebuilt TensorFlow container takes them (each value a one-element row of
    its (batch, 1) input), one prediction per row out."""

    session: VertexSession
    endpoint: str  # resource name

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        from google.cloud import aiplatform

        self.session.api()
        endpoint = aiplatform.Endpoint(self.endpoint, credentials=self.session.credentials)
        with self.session.explain(f"asking endpoint {self.endpoint}"):
            answer = endpoint.predict(instances=instances(rows))
        return list(answer.predictions)


def instances(rows: list[dict[str, Any]]) -> list[dict[str, list[Any]]]:
    """Vertex instances for raw feature rows: each value as its input's one-element row."""
    return [{name: [value] for name, value in row.items()} for row in rows]
