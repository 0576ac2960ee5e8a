"""The finalized model in the Vertex Model Registry: one model per search space, a new version
per finalize, uploaded through the real SDK (aiplatform.Model.upload).

What is uploaded is the SavedModel the trainer exports beside model.keras
(`--export_format=keras,saved_model`: <AIP_MODEL_DIR>/saved_model/), the form Vertex's prebuilt
TensorFlow prediction containers serve; its serving container is the prediction image of the
TensorFlow the trainer ran with (serving_image). The model is found again by its label
SPACE_LABEL (its display name is the space's name): a second finalize of the same space adds a
version to it (parent_model) and makes that version the default.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from backends.base import FinalizeRequest, FinalizeResult
from backends.vertex.session import VertexSession
from trialkit.errors import UserError

log = logging.getLogger(__name__)

SAVED_MODEL = "saved_model"  # the trainer's SavedModel, under its model directory
SPACE_LABEL = "dualtune-space"
STUDY_LABEL = "dualtune-study"
WINNER_LABEL = "dualtune-winner"
# Vertex's prebuilt prediction images are named for TensorFlow 2.x as tf2-{cpu|gpu}.2-{minor}.
_TRAINING_IMAGE = re.compile(r"^([a-z]+)-docker\.pkg\.dev/vertex-ai/training/tf-(cpu|gpu)\.2-(\d+)")


def label_value(text: str) -> str:
    """A Vertex label value from any text: lowercase letters, digits, _ and -, at most 63."""
    value = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    return value[:63].rstrip("-")


def model_labels(space: str, study: str, winner: str) -> dict[str, str]:
    """What links a model version to its space, its study and the trial it trained."""
    labels = {SPACE_LABEL: label_value(space), STUDY_LABEL: label_value(study)}
    if winner:
        labels[WINNER_LABEL] = label_value(winner)
    return labels


def serving_image(training_image: str, region: str, tf_version: str | None = None) -> str:
    """The prebuilt TensorFlow prediction image for the TensorFlow the trainer ran with:
    prediction/tf2-cpu.2-XX for a prebuilt training image tf-*.2-XX (same repository), else
    for the installed TensorFlow 2.XX (a custom training image: dualtune cannot see inside)."""
    found = _TRAINING_IMAGE.match(training_image)
    if found:
        repository, minor = found[1], found[3]
    else:
        if tf_version is None:
            from importlib.metadata import version

            tf_version = version("tensorflow")
        minor = tf_version.split(".")[1]
        repository = {"europe": "europe", "asia": "asia"}.get(region.split("-")[0], "us")
    return f"{repository}-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-{minor}:latest"


def register_model(
    session: VertexSession, request: FinalizeRequest, result: FinalizeResult
) -> FinalizeResult:
    """Upload the finalized SavedModel as a new version of the space's model (the first
    version of a new model the first time); the result names the model and the version."""
    if not (result.model_dir / SAVED_MODEL / "saved_model.pb").is_file():
        raise UserError(
            f"finalize: the trainer exported no SavedModel ({SAVED_MODEL}/ in AIP_MODEL_DIR), "
            f"which the Vertex Model Registry serves; add --export_format=keras,saved_model to "
            f"the space's finalize_args, or pass --no-vertex-model-registry"
        )
    from google.cloud import aiplatform

    session.api()  # the SDK, initialised for this session's endpoint and credentials
    space = request.space.name
    labels = model_labels(space, request.study, request.winner)
    parent = find_space_model(session, space)
    image = serving_image(session.container_uri, session.region)
    with session.explain(f"uploading the model of study {request.study} to the Model Registry"):
        model = aiplatform.Model.upload(
            display_name=space,
            artifact_uri=f"{result.model_uri}/{SAVED_MODEL}",
            serving_container_image_uri=image,
            labels=labels,
            parent_model=parent,
            is_default_version=True,
            version_description=f"dualtune study {request.study}, trial {request.winner or '?'}",
            project=session.project,
            location=session.region,
            credentials=session.credentials,
        )
    log.info(
        "Vertex model %s version %s (serving image %s)",
        model.resource_name,
        model.version_id,
        image,
    )
    return dataclasses.replace(
        result, registry_model=model.resource_name, registry_version=str(model.version_id)
    )


def find_space_model(session: VertexSession, space: str) -> str | None:
    """The resource name of the space's model (labelled SPACE_LABEL), None before its first
    finalize; with several, the oldest (the others are left alone, with a warning)."""
    from google.cloud import aiplatform

    wanted = f'labels.{SPACE_LABEL}="{label_value(space)}"'
    with session.explain(f"looking up the model of space {space}"):
        found: list[Any] = aiplatform.Model.list(
            filter=wanted,
            project=session.project,
            location=session.region,
            credentials=session.credentials,
        )
    if not found:
        return None
    found.sort(key=lambda m: m.create_time)
    if len(found) > 1:
        log.warning(
            "%d Vertex models carry %s; adding a version to the oldest, %s",
            len(found),
            wanted,
            found[0].resource_name,
        )
    return found[0].resource_name
