"""One Vertex AI session: the SDK initialised for a project, region and bucket, and what every
job of dualtune's shares (its machine, image, service account, network). Tuning (backend.py)
and finalize (finalize.py) both run through it, so neither imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.vertex.calls import JobApi, RetryPolicy, explained
from backends.vertex.packaging import JobSpec, Machine, custom_job, default_container_uri
from trialkit.gcs import fuse_path

POLL_S = 15.0  # real Vertex: trials take minutes; the emulator and tests use less


class VertexSession:
    """The SDK and the job settings of one backend; `api_endpoint` points at an emulator.

    `local_root` is where a stand-in on this machine mirrors gs:// paths (the emulator's
    workdir, FUSE layout): finalize then reads the model and the trainer's metric file there
    instead of downloading.
    """

    def __init__(
        self,
        project: str,
        region: str,
        staging_bucket: str,
        machine_type: str = "n1-standard-4",
        accelerator_type: str | None = None,
        accelerator_count: int = 0,
        container_uri: str | None = None,
        service_account: str | None = None,
        network: str | None = None,
        api_endpoint: str | None = None,
        credentials: Any = None,
        *,
        poll_s: float = POLL_S,
        retry: RetryPolicy | None = None,
        local_root: Path | None = None,
    ) -> None:
        self.project, self.region = project, region
        self.staging_bucket = staging_bucket.rstrip("/")
        self.machine = Machine(machine_type, accelerator_type, accelerator_count, container_uri)
        self.service_account, self.network = service_account, network
        self.api_endpoint, self.credentials = api_endpoint, credentials
        self.poll_s = poll_s
        self.retry = retry or RetryPolicy()
        self.local_root = local_root
        self._api: JobApi | None = None

    # -- the SDK ------------------------------------------------------------------------------
    def api(self) -> JobApi:
        """Initialise the SDK (once) and the job client."""
        if self._api is None:
            from google.cloud import aiplatform

            kwargs: dict[str, Any] = {
                "project": self.project,
                "location": self.region,
                "staging_bucket": self.staging_bucket,
            }
            if self.api_endpoint:
                from google.auth.credentials import AnonymousCredentials

                self.credentials = self.credentials or AnonymousCredentials()
                kwargs.update(api_endpoint=self.api_endpoint, api_transport="rest")
            if self.credentials is not None:
                kwargs["credentials"] = self.credentials
            with self.explain("initialising the Vertex AI SDK"):
                aiplatform.init(**kwargs)
                self._api = JobApi(self.region, self.retry, self.credentials)
        return self._api

    def explain(self, action: str):
        return explained(action, self.project, self.region)

    @property
    def container_uri(self) -> str:
        """--container-uri, else the prebuilt TensorFlow image (see default_container_uri)."""
        machine = self.machine
        gpu = bool(machine.accelerator_type and machine.accelerator_count)
        return machine.container_uri or default_container_uri(self.region, gpu)

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def console_url(self, name: str) -> str:
        fields = name.split("/")
        project, region, job_id = fields[1], fields[3], fields[-1]
        return (
            f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/"
            f"{job_id}/cpu?project={project}"
        )

    def trainer_job(self, trainer: Any, spec: JobSpec) -> Any:
        return custom_job(
            trainer,
            spec,
            self.machine,
            self.container_uri,
            self.staging_bucket,
            self.project,
            self.credentials,
        )

    def place(self, job_spec: Any) -> None:
        """Service account and network, as the SDK's run() would set them."""
        if self.service_account:
            job_spec.service_account = self.service_account
        if self.network:
            job_spec.network = self.network

    def local_path(self, uri: str) -> Path:
        """The local mirror of a gs:// URI (only with local_root)."""
        assert self.local_root is not None
        return fuse_path(uri, self.local_root)
