"""What the Vertex backend needs beyond the study request: typed, validated, then resolved.

Where a study runs: `emulator` (a `dualtune emulator` URL, or DUALTUNE_VERTEX_EMULATOR) whose
project, region and bucket are the defaults; otherwise project, region and staging_bucket are
required. Values given now win over what the study recorded when it was submitted (study.json),
which wins over nothing: `attach` and `finalize` need no settings again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from trialkit.errors import UserError

log = logging.getLogger(__name__)

EMULATOR_ENV = "DUALTUNE_VERTEX_EMULATOR"
INFO_PATHS = ("/dualtune-emulator/info", "/dualtune/info")
RECORDED = ("project", "region", "staging_bucket", "emulator")


@dataclass(frozen=True)
class VertexSettings:
    """Settings of `--backend vertex` as given (flags or API arguments); see resolve()."""

    project: str | None = None
    region: str | None = None
    staging_bucket: str | None = None
    machine_type: str = "n1-standard-4"
    accelerator_type: str | None = None
    accelerator_count: int = 0
    container_uri: str | None = None
    service_account: str | None = None
    network: str | None = None
    emulator: str | None = None  # URL of a `dualtune emulator`
    # Filled by resolve(): where an emulator on this machine keeps gs:// paths, and whether
    # resolve() made these settings (so building a backend does not ask the emulator again).
    emulator_workdir: str | None = None
    resolved: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.accelerator_count < 0:
            raise UserError("--accelerator-count: must be 0 or more; give e.g. 1")
        if self.accelerator_type and not self.accelerator_count:
            object.__setattr__(self, "accelerator_count", 1)
        if self.accelerator_count and not self.accelerator_type:
            raise UserError(
                "--accelerator-count: needs --accelerator-type too, e.g. --accelerator-type "
                "NVIDIA_TESLA_T4"
            )

    def record(self) -> dict[str, Any]:
        """Where the study ran, for study.json (machine settings are the job's own)."""
        return {k: getattr(self, k) for k in RECORDED if getattr(self, k) is not None}

    def resumed(self, recorded: dict[str, Any]) -> VertexSettings:
        """Given values, then the study's record, then the job's name: see resolve()."""
        return self.resolve(recorded)

    def resolve(self, recorded: dict[str, Any] | None = None, job: str | None = None):
        """Complete settings: given values, then the emulator's own or the record, then the
        job's resource name. Raises UserError naming the missing setting."""
        recorded = recorded or {}
        emulator = self.emulator or os.environ.get(EMULATOR_ENV)
        if not emulator and not (self.project or self.region or self.staging_bucket):
            emulator = recorded.get("emulator")  # where the study ran, unless told otherwise
        info = emulator_info(emulator, _source(self.emulator)) if emulator else {}
        if info.get("storageUrl"):  # google-cloud-storage (package uploads) reads it
            os.environ["STORAGE_EMULATOR_HOST"] = info["storageUrl"]
        from_job = job_fields(job) if job else {}
        fallback = {**recorded, **from_job} if not emulator else {**from_job}
        project = self.project or info.get("project") or fallback.get("project")
        region = self.region or info.get("location") or fallback.get("region")
        bucket = self.staging_bucket or info.get("bucket") or recorded.get("staging_bucket")
        _require(project, region, bucket)
        return dataclasses.replace(
            self,
            project=project,
            region=region,
            staging_bucket=bucket.rstrip("/"),
            emulator=emulator.rstrip("/") if emulator else None,
            emulator_workdir=info.get("workdir") if emulator else None,
            resolved=True,
        )


def _source(given: str | None) -> str:
    return "--emulator" if given else EMULATOR_ENV


def _require(project: str | None, region: str | None, bucket: str | None) -> None:
    for flag, value in (("--project", project), ("--region", region)):
        if not value:
            raise UserError(
                f"{flag}: required with --backend vertex; give it, or --emulator URL to use a "
                f"local `dualtune emulator`"
            )
    if not bucket:
        raise UserError(
            "--staging-bucket: required with --backend vertex; give gs://BUCKET (in the same "
            "region) for the trainer package and trial outputs"
        )
    bucket = bucket.rstrip("/")
    if not bucket.startswith("gs://") or len(bucket) <= len("gs://"):
        raise UserError(
            f"--staging-bucket: {bucket!r} is not a Cloud Storage URI; write it as gs://BUCKET"
        )


def emulator_info(url: str, source: str) -> dict[str, Any]:
    """What a running `dualtune emulator` says about itself (project, location, bucket...)."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UserError(f"{source}: {url!r} is not an http:// URL; e.g. http://127.0.0.1:8780")
    for path in INFO_PATHS:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as answer:  # noqa: S310
                return json.loads(answer.read().decode("utf-8"))
        except urllib.error.HTTPError:
            continue  # an emulator without this endpoint: the settings must say the rest
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise UserError(
                f"{source}: no Vertex emulator answers at {url} "
                f"({getattr(err, 'reason', err)}); start one with `dualtune emulator` and pass "
                f"the URL it prints"
            ) from None
    log.warning("%s at %s says nothing about itself; using the settings given", source, url)
    return {}


def job_fields(job: str) -> dict[str, str]:
    """project and region from projects/P/locations/L/hyperparameterTuningJobs/ID."""
    parts = job.split("/")
    if len(parts) == 6 and parts[0] == "projects" and parts[2] == "locations":
        return {"project": parts[1], "region": parts[3]}
    return {}


def full_job_name(job: str, recorded: str | None, settings: VertexSettings | None = None) -> str:
    """projects/P/locations/L/hyperparameterTuningJobs/ID from a full name or a bare ID."""
    if "/" in job:
        return job
    if recorded and recorded.rsplit("/", 1)[-1] == job:
        return recorded
    if settings is None or not settings.project:
        return job
    return f"projects/{settings.project}/locations/{settings.region}/hyperparameterTuningJobs/{job}"
