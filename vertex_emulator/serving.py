"""The Model Registry, endpoints and online prediction: the emulator serves what it registers.

Routes (rows for routes.py's table), as strict as the job routes: bodies parse strictly into
the aiplatform_v1 request protos (an unknown field is a 400), a missing model or endpoint is a
404, and instances the model cannot take are a 400 in Vertex's error shape.

- models:upload copies the artifact directory out of Cloud Storage into <workdir>/models/ (as
  Vertex copies it into its own storage) and keeps the model as one resource per version
  (`<model>@<version>` inside the store; answered under the model's name with its versionId).
  With parent_model it adds a version to that model; the version aliased `default` answers
  for the bare model name and in models.list.
- endpoints create/get/list, deployModel/undeployModel with Vertex's traffic-split rules,
  machine type and replica counts validated and kept.
- :predict runs the deployed version's SavedModel (serving_default), loaded lazily with
  TensorFlow in this process, on instances given as Vertex's prebuilt TensorFlow container
  takes them (a list of {input name: value}, each value shaped as one row of that input).
- Long-running operations (upload, create endpoint, deploy, undeploy) finish before they are
  answered: the operation comes back done, with its response; GET on its name answers it again.
"""

from __future__ import annotations

import random
import re
import shutil
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, unquote

from google.protobuf import json_format

from vertex_emulator.errors import ApiError, invalid, not_found
from vertex_emulator.runner import Runtime
from vertex_emulator.store import Store, copy_of

_PARENT = r"projects/[^/]+/locations/[^/]+"
_ID = r"[^/:]+"
V1 = "type.googleapis.com/google.cloud.aiplatform.v1."
# Vertex's prebuilt TensorFlow prediction images: they serve a SavedModel's serving_default.
PREBUILT_TF = re.compile(r"^[a-z]+-docker\.pkg\.dev/vertex-ai/prediction/tf2-(cpu|gpu)\.2-\d+")
MACHINE_TYPE = re.compile(r"^(n1|n2|n2d|e2|c2|c2d|a2|g2)-(standard|highmem|highcpu)-\d+$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
ALIAS = re.compile(r"^[a-z][a-z0-9-]{0,126}[a-z0-9]$")
DEDICATED_RESOURCES = 1  # Model.DeploymentResourcesType
_TERM = re.compile(r'^\s*(display_name|displayName|labels\.([a-z0-9_-]+))\s*=\s*"([^"]*)"\s*$')


def serving_classes() -> dict:
    """The message class of each collection kept here (the store reads them back)."""
    from google.cloud.aiplatform_v1 import types

    return {"models": types.Model.pb(), "endpoints": types.Endpoint.pb()}


class Serving:
    """Models, endpoints and predictions over the emulator's store."""

    def __init__(self, rt: Runtime, store: Store) -> None:
        from google.cloud.aiplatform_v1 import types  # heavy: imported when an emulator starts

        self.rt, self.store, self.types = rt, store, types
        self.operations: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._loaded: dict[str, object] = {}
        self._random = random.Random(rt.seed)

    def routes(self, parse: Callable, to_dict: Callable) -> list[tuple[str, re.Pattern, Callable]]:
        """Rows for routes.py's table: (method, path pattern, handler(match, query, body, ints))."""
        self._parse, self._to_dict = parse, to_dict
        p, t = parse, self.types
        return [
            ("POST", _path(rf"({_PARENT})/models:upload"),
             lambda m, q, b, i: self.upload(m[1], p(b, t.UploadModelRequest.pb()()), i)),
            ("GET", _path(rf"({_PARENT})/models"), lambda m, q, b, i: self.list_models(m[1], q, i)),
            ("GET", _path(rf"({_PARENT}/models/{_ID})"),
             lambda m, q, b, i: self.model_view(self.version(unquote(m[1])), i)),
            ("POST", _path(rf"({_PARENT})/endpoints"),
             lambda m, q, b, i: self.create_endpoint(m[1], q, p(b, t.Endpoint.pb()()), i)),
            ("GET", _path(rf"({_PARENT})/endpoints"),
             lambda m, q, b, i: self.list_endpoints(m[1], q, i)),
            ("GET", _path(rf"({_PARENT}/endpoints/{_ID})"),
             lambda m, q, b, i: to_dict(self.store.get(m[1]), i)),
            ("POST", _path(rf"({_PARENT}/endpoints/{_ID}):deployModel"),
             lambda m, q, b, i: self.deploy(m[1], p(b, t.DeployModelRequest.pb()()), i)),
            ("POST", _path(rf"({_PARENT}/endpoints/{_ID}):undeployModel"),
             lambda m, q, b, i: self.undeploy(m[1], p(b, t.UndeployModelRequest.pb()()), i)),
            ("POST", _path(rf"({_PARENT}/endpoints/{_ID}):predict"),
             lambda m, q, b, i: self.predict(m[1], p(b, t.PredictRequest.pb()()))),
            ("GET", _path(rf"({_PARENT}(?:/(?:models|endpoints)/{_ID})?/operations/{_ID})"),
             lambda m, q, b, i: self.operation(m[1])),
        ]  # fmt: skip

    # -- operations ---------------------------------------------------------------------------
    def _done(self, owner: str, response_type: str, response: dict) -> dict:
        name = f"{owner}/operations/{self.store.new_id()}"
        operation = {"name": name, "done": True, "response": {"@type": V1 + response_type}}
        operation["response"].update(response)
        with self._lock:
            self.operations[name] = operation
        return operation

    def operation(self, name: str) -> dict:
        with self._lock:
            if name not in self.operations:
                raise not_found(name)
            return dict(self.operations[name])

    # -- models ---------------------------------------------------------------------------------
    def upload(self, parent: str, request, ints: bool) -> dict:
        model = request.model
        _check_model(model)
        if request.parent_model:
            base = request.parent_model
            if not base.startswith(f"{parent}/models/") or not self._versions(base):
                raise not_found(base)
            number = max(int(v.version_id) for v in self._versions(base)) + 1
        else:
            base = f"{parent}/models/{request.model_id or self.store.new_id()}"
            if self._versions(base):
                raise ApiError(409, f"Model {base} already exists.")
            number = 1
        self._snapshot(model.artifact_uri, base, number, model.container_spec.image_uri)
        aliases = list(model.version_aliases)
        if number == 1 and "default" not in aliases:
            aliases.append("default")
        self._move_aliases(base, aliases)
        for field in ("deployed_models", "version_id", "supported_deployment_resources_types"):
            model.ClearField(field)
        model.version_id = str(number)
        del model.version_aliases[:]
        model.version_aliases.extend(aliases)
        model.supported_deployment_resources_types.append(DEDICATED_RESOURCES)
        model.version_create_time.GetCurrentTime()
        model.version_update_time.GetCurrentTime()
        self.store.put(f"{base}@{number}", model)
        answer = {"model": base, "modelVersionId": str(number)}
        return self._done(base, "UploadModelResponse", answer)

    def _snapshot(self, artifact_uri: str, base: str, number: int, image: str) -> None:
        """Copy the artifacts out of Cloud Storage, as Vertex does; a prebuilt TensorFlow
        image needs a SavedModel at the top of artifact_uri."""
        if not artifact_uri:
            if PREBUILT_TF.match(image):
                raise invalid("artifact_uri is required with a prebuilt prediction image.")
            return
        if not artifact_uri.startswith("gs://"):
            raise invalid(f"artifact_uri {artifact_uri!r} must be a gs:// URI.")
        target = self._artifacts(base, number)
        shutil.rmtree(target, ignore_errors=True)
        try:
            count = self.rt.storage.download_tree(artifact_uri, target)
        except (ValueError, OSError) as err:
            raise invalid(f"artifact_uri {artifact_uri}: {err}") from err
        if PREBUILT_TF.match(image) and not (target / "saved_model.pb").is_file():
            shutil.rmtree(target, ignore_errors=True)
            raise invalid(
                f"Model directory {artifact_uri} is expected to contain exactly one of: "
                f"[saved_model.pb, saved_model.pbtxt] ({count} objects found there)."
            )

    def _artifacts(self, base: str, number: int | str):
        return self.rt.workdir / "models" / base.rsplit("/", 1)[-1] / str(number)

    def _versions(self, base: str) -> list:
        prefix = f"{base}@"
        return [self.store.get(n) for n in self.store.names() if n.startswith(prefix)]

    def _move_aliases(self, base: str, aliases: list[str]) -> None:
        """An alias names one version: the new version takes it from the others."""
        taken = set(aliases)

        def change(message) -> None:
            kept = [a for a in message.version_aliases if a not in taken]
            del message.version_aliases[:]
            message.version_aliases.extend(kept)

        for version in self._versions(base):
            if set(version.version_aliases) & taken:
                self.store.update(version.name, change)

    def version(self, name: str):
        """The stored version a model name means: `model@N`, `model@alias`, or the default."""
        base, _, wanted = name.partition("@")
        wanted = wanted or "default"
        for version in self._versions(base):
            if wanted == version.version_id or wanted in version.version_aliases:
                return version
        raise not_found(name)

    def model_view(self, version, ints: bool) -> dict:
        shown = copy_of(version)
        shown.name = version.name.partition("@")[0]
        return self._to_dict(shown, ints)

    def list_models(self, parent: str, query: str, ints: bool) -> dict:
        prefix = f"{parent}/models/"
        names = [n for n in self.store.names() if n.startswith(prefix) and "@" in n]
        defaults = [self.version(b) for b in sorted({n.partition("@")[0] for n in names})]
        wanted = _filter(query)
        shown = [self.model_view(m, ints) for m in defaults if wanted(m)]
        return {"models": shown} if shown else {}

    # -- endpoints ------------------------------------------------------------------------------
    def create_endpoint(self, parent: str, query: str, endpoint, ints: bool) -> dict:
        if not endpoint.display_name:
            raise invalid("display_name is required.")
        _check_labels(endpoint.labels)
        if endpoint.deployed_models or endpoint.traffic_split:
            raise invalid("A new endpoint has no deployed models: leave them and traffic_split.")
        wanted = (parse_qs(query).get("endpointId") or [""])[0]
        if wanted:
            name = f"{parent}/endpoints/{wanted}"
            if name in self.store.names():
                raise ApiError(409, f"Endpoint {name} already exists.")
            stored = self.store.put(name, endpoint)
        else:
            stored = self.store.add(parent, "endpoints", endpoint)
        return self._done(stored.name, "Endpoint", self._to_dict(stored, ints))

    def list_endpoints(self, parent: str, query: str, ints: bool) -> dict:
        wanted = _filter(query)
        shown = [self._to_dict(e, ints) for e in self.store.list(parent, "endpoints") if wanted(e)]
        return {"endpoints": shown} if shown else {}

    def deploy(self, name: str, request, ints: bool) -> dict:
        endpoint = self.store.get(name)
        deployed = request.deployed_model
        version = self.version(deployed.model)
        _check_resources(deployed)
        deployed.id = self.store.new_id()
        deployed.model = version.name.partition("@")[0]
        deployed.model_version_id = version.version_id
        deployed.display_name = deployed.display_name or version.display_name
        deployed.create_time.GetCurrentTime()
        split = dict(request.traffic_split)
        if split:
            ids = {d.id for d in endpoint.deployed_models} | {"0"}
            _check_split(split, ids)
            split = {(deployed.id if k == "0" else k): v for k, v in split.items()}

        def change(message) -> None:
            message.deployed_models.append(deployed)
            if split:
                message.traffic_split.clear()
                message.traffic_split.update(split)

        self.store.update(name, change)
        answer = {"deployedModel": self._to_dict(deployed, ints)}
        return self._done(name, "DeployModelResponse", answer)

    def undeploy(self, name: str, request, ints: bool) -> dict:
        endpoint = self.store.get(name)
        gone = request.deployed_model_id
        if gone not in {d.id for d in endpoint.deployed_models}:
            raise not_found(f"DeployedModel {gone} of {name}")
        remaining = {d.id for d in endpoint.deployed_models} - {gone}
        split = dict(request.traffic_split)
        if split:
            _check_split(split, remaining)
        elif endpoint.traffic_split.get(gone, 0) and remaining:
            raise ApiError(
                400,
                f"DeployedModel {gone} carries traffic: give a traffic_split for the others.",
                "FAILED_PRECONDITION",
            )
        else:
            split = {k: v for k, v in endpoint.traffic_split.items() if k != gone}

        def change(message) -> None:
            kept = [d for d in message.deployed_models if d.id != gone]
            del message.deployed_models[:]
            message.deployed_models.extend(kept)
            message.traffic_split.clear()
            message.traffic_split.update(split)

        self.store.update(name, change)
        return self._done(name, "UndeployModelResponse", {})

    # -- prediction -----------------------------------------------------------------------------
    def predict(self, name: str, request) -> dict:
        endpoint = self.store.get(name)
        shares = [(k, v) for k, v in endpoint.traffic_split.items() if v > 0]
        if not shares:
            raise ApiError(
                400, f"Endpoint {name} has no deployed model taking traffic.", "FAILED_PRECONDITION"
            )
        with self._lock:
            chosen = self._random.choices([k for k, _ in shares], [v for _, v in shares])[0]
        deployed = next(d for d in endpoint.deployed_models if d.id == chosen)
        instances = [json_format.MessageToDict(v) for v in request.instances]
        if not instances:
            raise invalid("instances must not be empty.")
        path = self._artifacts(deployed.model, deployed.model_version_id)
        signature = self._signature(f"{deployed.model}@{deployed.model_version_id}", path)
        from vertex_emulator.tf_serving import run_signature

        return {
            "predictions": run_signature(signature, instances),
            "deployedModelId": deployed.id,
            "model": deployed.model,
            "modelDisplayName": deployed.display_name,
            "modelVersionId": deployed.model_version_id,
        }

    def _signature(self, key: str, path):
        """The version's serving_default, loaded once (TensorFlow only when first asked)."""
        with self._lock:
            if key not in self._loaded:
                if not (path / "saved_model.pb").is_file():
                    raise ApiError(
                        400, f"Model {key} holds no SavedModel to serve.", "FAILED_PRECONDITION"
                    )
                import tensorflow as tf

                loaded = tf.saved_model.load(str(path))
                self._loaded[key] = (loaded, loaded.signatures["serving_default"])
            return self._loaded[key][1]


def _path(pattern: str) -> re.Pattern:
    return re.compile(f"^/v1/{pattern}$")


def _filter(query: str) -> Callable:
    """What a list's filter keeps: display_name="x" and labels.k="v" terms joined by AND."""
    text = (parse_qs(query).get("filter") or [""])[0].strip()
    terms = []
    for term in re.split(r"\s+AND\s+", text) if text else []:
        match = _TERM.match(term)
        if not match:
            raise invalid(f'Unsupported filter {text!r}: display_name="..." and labels.KEY="..."')
        terms.append((match[2], match[3]))

    def keep(message) -> bool:
        for label, value in terms:
            have = message.labels.get(label) if label else message.display_name
            if have != value:
                return False
        return True

    return keep


def _check_model(model) -> None:
    if not model.display_name:
        raise invalid("model.display_name is required.")
    if not model.container_spec.image_uri:
        raise invalid("model.container_spec.image_uri is required.")
    _check_labels(model.labels)
    for alias in model.version_aliases:
        if alias != "default" and not ALIAS.match(alias):
            raise invalid(f"Invalid version alias {alias!r}: [a-z][a-z0-9-]*, up to 128 chars.")


def _check_labels(labels) -> None:
    for key, value in labels.items():
        if not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
            raise invalid(
                f"Invalid label {key}={value!r}: keys and values are lowercase letters, digits, "
                f"_ and -, at most 63 characters; a key starts with a letter."
            )


def _check_resources(deployed) -> None:
    if deployed.HasField("automatic_resources"):
        raise invalid("This model supports DEDICATED_RESOURCES only: give dedicated_resources.")
    resources = deployed.dedicated_resources
    if not deployed.HasField("dedicated_resources"):
        raise invalid("deployed_model.dedicated_resources is required.")
    machine = resources.machine_spec.machine_type
    if not MACHINE_TYPE.match(machine):
        raise invalid(f"Machine type {machine!r} is not supported for online prediction.")
    if resources.min_replica_count < 1:
        raise invalid("dedicated_resources.min_replica_count must be at least 1.")
    if resources.max_replica_count and resources.max_replica_count < resources.min_replica_count:
        raise invalid("dedicated_resources.max_replica_count must not be below min_replica_count.")
    if not resources.max_replica_count:
        resources.max_replica_count = resources.min_replica_count


def _check_split(split: dict, ids: set[str]) -> None:
    unknown = sorted(set(split) - ids)
    if unknown:
        raise invalid(f"traffic_split names {unknown[0]}, which is no DeployedModel here.")
    if any(not 0 <= v <= 100 for v in split.values()) or sum(split.values()) != 100:
        raise invalid(f"traffic_split percentages must add up to 100, not {sum(split.values())}.")
