"""What the Vertex backend needs beyond the study request: typed, validated, then resolved.

Where a study runs: project, region and staging_bucket (required), and optionally an API
endpoint, a Cloud Storage endpoint and a file holding a bearer token, for a Vertex-compatible
service other than Google's (the CLI's --emulator fills these from a `dualtune emulator`: see
dualtune/emulator_client.py; this module knows nothing of emulators). Values given now win over
what the study recorded when it was submitted (study.json), which wins over the job's name:
`attach` and `finalize` need no settings again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from trialkit.errors import UserError

# Where the study ran: recorded in study.json. The token file's path is, the token never is.
PLACE = ("project", "region", "staging_bucket")
ENDPOINT = ("api_endpoint", "storage_endpoint", "token_file", "poll_s")
RECORDED = PLACE + ENDPOINT


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
    api_endpoint: str | None = None  # e.g. http://127.0.0.1:8780 (REST); None: Google's
    storage_endpoint: str | None = None  # Cloud Storage JSON API; None: Google's
    token_file: str | None = None  # a bearer access token; None: application default creds
    poll_s: float | None = None  # how often a job is read; None: session.POLL_S
    check_trainer: bool = True  # ask the trainer's --help here for its flags before submitting

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
        if self.poll_s is not None and not self.poll_s > 0:
            raise UserError(f"poll_s: {self.poll_s!r} must be a positive number of seconds")

    def record(self) -> dict[str, Any]:
        """Where the study ran, for study.json (machine settings are the job's own)."""
        return {k: getattr(self, k) for k in RECORDED if getattr(self, k) is not None}

    def resumed(self, recorded: dict[str, Any]) -> VertexSettings:
        """Given values, then the study's record, then the job's name: see resolve()."""
        return self.resolve(recorded)

    def resolve(self, recorded: dict[str, Any] | None = None, job: str | None = None):
        """Complete settings: given values, then the record, then the job's resource name.
        The record's endpoint is used only when no place or endpoint is given now (a study that
        ran elsewhere is followed where it ran unless told otherwise). Raises UserError naming
        the missing setting."""
        recorded = recorded or {}
        given_place = any(getattr(self, k) for k in (*PLACE, "api_endpoint"))
        from_job = job_fields(job) if job else {}
        fallback = {**recorded, **from_job}
        values = {k: getattr(self, k) or fallback.get(k) for k in PLACE}
        if not given_place:
            values.update({k: recorded.get(k) for k in ENDPOINT if recorded.get(k) is not None})
            if recorded.get("emulator") and not recorded.get("api_endpoint"):  # an older record
                raise UserError(
                    f"--emulator: this study ran on {recorded['emulator']} (recorded by an "
                    f"older dualtune, without its endpoints); give --emulator "
                    f"{recorded['emulator']} again"
                )
        _require(values["project"], values["region"], values["staging_bucket"])
        values["staging_bucket"] = values["staging_bucket"].rstrip("/")
        return dataclasses.replace(self, **values)


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


def bearer_credentials(token_file: str) -> Any:
    """Credentials that send the token in `token_file` as `Authorization: Bearer` (the SDK and
    google-cloud-storage both send it); UserError when the file cannot be read."""
    from google.oauth2.credentials import Credentials

    try:
        with open(token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as err:
        raise UserError(
            f"token file {token_file}: cannot read it ({err.strerror}); is the service that "
            f"wrote it (e.g. `dualtune emulator --workdir DIR`) running with that directory?"
        ) from None
    if not token:
        raise UserError(f"token file {token_file}: it is empty; restart the service that wrote it")
    return Credentials(token=token)


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
