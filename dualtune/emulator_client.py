"""What a `dualtune emulator` tells a client, said in one place: its URL becomes plain
VertexSettings (API endpoint, Cloud Storage endpoint, project, region, bucket, the file holding
its bearer token, a short poll interval). The Vertex backend then runs exactly as against
Google's Vertex AI: it never asks whether an emulator answers.

Called by the CLI (--emulator URL) and the API (dualtune.emulator_settings(URL), or the
DUALTUNE_VERTEX_EMULATOR variable when vertex settings name no place).
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.error
import urllib.request
from typing import Any

from backends.vertex.settings import PLACE, VertexSettings
from trialkit.errors import UserError

EMULATOR_ENV = "DUALTUNE_VERTEX_EMULATOR"
INFO_PATH = "/dualtune-emulator/info"
POLL_S = 0.5  # local calls are cheap; real Vertex is read every session.POLL_S


def emulator_settings(
    url: str, given: VertexSettings | None = None, source: str = "--emulator"
) -> VertexSettings:
    """`given` (default: VertexSettings()) pointed at the emulator at `url`: its project,
    region and bucket unless given, its endpoints and token file, a short poll unless given."""
    given = given or VertexSettings()
    info = emulator_info(url, source)
    base = url.rstrip("/")
    return dataclasses.replace(
        given,
        project=given.project or info["project"],
        region=given.region or info["location"],
        staging_bucket=given.staging_bucket or info["bucket"],
        api_endpoint=base,
        storage_endpoint=info["storageUrl"],
        token_file=info["tokenFile"],
        poll_s=given.poll_s or POLL_S,
    )


def from_environment(settings: Any) -> Any:
    """Vertex settings that name no place or endpoint, pointed at DUALTUNE_VERTEX_EMULATOR when
    it is set; anything else as it is."""
    url = os.environ.get(EMULATOR_ENV)
    if not url or not isinstance(settings, VertexSettings):
        return settings
    if any(getattr(settings, k) for k in (*PLACE, "api_endpoint")):
        return settings
    return emulator_settings(url, settings, EMULATOR_ENV)


def emulator_info(url: str, source: str) -> dict[str, Any]:
    """What a running `dualtune emulator` says about itself (project, location, bucket,
    storageUrl, tokenFile); UserError naming `source` when nothing such answers."""
    base = url.rstrip("/")
    if not base.startswith("http://"):
        raise UserError(f"{source}: {url!r} is not an http:// URL; e.g. http://127.0.0.1:8780")
    try:
        with urllib.request.urlopen(base + INFO_PATH, timeout=10) as answer:  # noqa: S310
            info = json.loads(answer.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise UserError(
            f"{source}: no Vertex emulator answers at {url} ({getattr(err, 'reason', err)}); "
            f"start one with `dualtune emulator` and pass the URL it prints"
        ) from None
    wanted = ("project", "location", "bucket", "storageUrl", "tokenFile")
    missing = [k for k in wanted if not isinstance(info, dict) or not info.get(k)]
    if missing:
        raise UserError(
            f"{source}: {url} is not a `dualtune emulator` of this version (its info lacks "
            f"{', '.join(missing)}); restart it with this dualtune"
        )
    return info
