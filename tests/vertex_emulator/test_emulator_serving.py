"""The emulator's Model Registry, endpoints and :predict through the real SDK over HTTP: it
serves what it registers (a tiny SavedModel, staged by the SDK itself), and it is as strict as
its job routes (unknown fields, missing resources, bad instances, bad deployments)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

pytestmark = pytest.mark.slow

IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-17:latest"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A two-input Keras model and its SavedModel (what the trainer exports)."""
    import keras

    a, b = keras.Input((1,), name="a"), keras.Input((1,), name="b")
    out = keras.layers.Dense(1, name="pred")(keras.layers.Concatenate()([a, b]))
    model = keras.Model({"a": a, "b": b}, out)
    path = tmp_path_factory.mktemp("tiny") / "saved_model"
    model.export(str(path), verbose=False)
    return model, path


@pytest.fixture
def uploaded(aiplatform, saved_model):
    model, path = saved_model
    registered = aiplatform.Model.upload(
        display_name="tiny", artifact_uri=str(path), serving_container_image_uri=IMAGE,
        labels={"kind": "tiny"},
    )  # fmt: skip
    return model, registered


def _post(emulator, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{emulator.url}/v1/{path}", data=json.dumps(body).encode(), method="POST",
        headers={**emulator.headers(), "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_an_uploaded_model_serves_what_keras_predicts(aiplatform, uploaded):
    model, registered = uploaded
    again = aiplatform.Model.upload(
        display_name="tiny", artifact_uri=registered.uri, serving_container_image_uri=IMAGE,
        parent_model=registered.resource_name, labels={"kind": "tiny"},
    )  # fmt: skip
    assert again.resource_name == registered.resource_name and again.version_id == "2"
    assert aiplatform.Model(registered.resource_name, version="1").version_aliases == []
    endpoint = aiplatform.Endpoint.create(display_name="tiny-endpoint")
    again.deploy(endpoint=endpoint, machine_type="n1-standard-2")
    rows = [{"a": [0.5], "b": [-1.0]}, {"a": [2.0], "b": [3.0]}]
    answer = endpoint.predict(instances=rows)
    expected = model.predict(
        {"a": np.array([[0.5], [2.0]]), "b": np.array([[-1.0], [3.0]])}, verbose=0
    )
    assert [p[0] for p in answer.predictions] == pytest.approx(expected[:, 0], abs=1e-6)
    assert answer.deployed_model_id and answer.model_version_id == "2"
    assert answer.model_resource_name == registered.resource_name


def test_bad_instances_answer_400_naming_the_input(aiplatform, uploaded):
    from google.api_core import exceptions

    _, registered = uploaded
    endpoint = registered.deploy(machine_type="n1-standard-2")
    with pytest.raises(exceptions.BadRequest, match="missing named input: b"):
        endpoint.predict(instances=[{"a": [1.0]}])
    with pytest.raises(exceptions.BadRequest, match="does not have named input: c"):
        endpoint.predict(instances=[{"a": [1.0], "b": [1.0], "c": [1.0]}])
    with pytest.raises(exceptions.BadRequest, match="must have shape \\[1\\]"):
        endpoint.predict(instances=[{"a": 1.0, "b": 1.0}])
    with pytest.raises(exceptions.BadRequest, match="takes float32"):
        endpoint.predict(instances=[{"a": ["x"], "b": [1.0]}])


def test_unknown_fields_and_missing_resources_answer_as_vertex(aiplatform, emulator, uploaded):
    from google.api_core import exceptions

    _, registered = uploaded
    parent = f"projects/{emulator.project}/locations/{emulator.location}"
    status, body = _post(emulator, f"{parent}/models:upload", {"model": {"bogus": 1}})
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert "bogus" in body["error"]["message"]
    with pytest.raises(exceptions.NotFound):
        aiplatform.Model(f"{parent}/models/424242")
    with pytest.raises(exceptions.NotFound):
        aiplatform.Model(registered.resource_name, version="9")
    status, body = _post(emulator, f"{parent}/endpoints/424242:predict", {"instances": [{}]})
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"


def test_bad_uploads_and_deployments_are_refused(aiplatform, emulator, uploaded):
    from google.api_core import exceptions

    _, registered = uploaded
    with pytest.raises(exceptions.BadRequest, match="saved_model.pb"):  # the SDK checks a
        aiplatform.Model.upload(  # local folder itself; a gs:// one is the service's to check
            display_name="empty",
            artifact_uri=f"{emulator.bucket}/nothing-here",
            serving_container_image_uri=IMAGE,
        )
    with pytest.raises(exceptions.BadRequest, match="Invalid label"):
        aiplatform.Model.upload(
            display_name="x", artifact_uri=registered.uri, serving_container_image_uri=IMAGE,
            labels={"Study": "A"},
        )  # fmt: skip
    endpoint = aiplatform.Endpoint.create(display_name="strict")
    with pytest.raises(exceptions.BadRequest, match="Machine type"):
        registered.deploy(endpoint=endpoint, machine_type="huge-machine")
    deploy = {
        "deployedModel": {
            "model": registered.resource_name,
            "dedicatedResources": {
                "machineSpec": {"machineType": "n1-standard-2"}, "minReplicaCount": 1
            },
        },
        "trafficSplit": {"0": 50},
    }  # fmt: skip
    status, body = _post(emulator, f"{endpoint.resource_name}:deployModel", deploy)
    assert status == 400 and "add up to 100" in body["error"]["message"]
    with pytest.raises(exceptions.NotFound):
        endpoint.undeploy("12345")
    assert not aiplatform.Endpoint(endpoint.resource_name).list_models()
