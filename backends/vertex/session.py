"""One Vertex AI session: the SDK initialised for a project, region and bucket, and what every
job of dualtune's shares (its machine, image, service account, network). Tuning (backend.py)
and finalize (finalize.py) both run through it, so neither imports the other.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from backends.vertex.calls import JobApi, RetryPolicy, explained
from backends.vertex.packaging import JobSpec, Machine, custom_job, default_container_uri

POLL_S = 15.0  # real Vertex: trials take minutes; a local service and tests use less
STORAGE_HOST_ENV = "STORAGE_EMULATOR_HOST"  # the one way to move the SDK's own uploads


class VertexSession:
    """The SDK and the job settings of one backend.

    `api_endpoint` and `storage_endpoint` point at a Vertex-compatible service other than
    Google's (REST), `token_file` holds its bearer token; every call, Cloud Storage included,
    goes through the same code whichever service answers.
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
        storage_endpoint: str | None = None,
        token_file: str | None = None,
    ) -> None:
        self.project, self.region = project, region
        self.staging_bucket = staging_bucket.rstrip("/")
        self.machine = Machine(machine_type, accelerator_type, accelerator_count, container_uri)
        self.service_account, self.network = service_account, network
        self.api_endpoint, self.credentials = api_endpoint, credentials
        self.poll_s = poll_s
        self.retry = retry or RetryPolicy()
        self.storage_endpoint, self.token_file = storage_endpoint, token_file
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
            if self.token_file and self.credentials is None:
                from backends.vertex.settings import bearer_credentials

                self.credentials = bearer_credentials(self.token_file)
            if self.api_endpoint:
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

    def console_url(self, name: str) -> str | None:
        """Where a person sees job `name` in Google's Cloud Console; None for a service at an
        endpoint of its own (an emulator has no console page)."""
        if self.api_endpoint:
            return None
        fields = name.split("/")
        project, region, job_id = fields[1], fields[3], fields[-1]
        return (
            f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/"
            f"{job_id}/cpu?project={project}"
        )

    def trainer_job(self, trainer: Any, spec: JobSpec) -> Any:
        with self.storage_endpoint_set():
            return custom_job(
                trainer,
                spec,
                self.machine,
                self.container_uri,
                self.staging_bucket,
                self.project,
                self.credentials,
            )

    def storage(self) -> Any:
        """A google-cloud-storage client for this session's endpoint and credentials."""
        from google.cloud import storage

        self.api()  # the credentials
        options = {"api_endpoint": self.storage_endpoint} if self.storage_endpoint else None
        return storage.Client(
            project=self.project, credentials=self.credentials, client_options=options
        )

    @contextlib.contextmanager
    def storage_endpoint_set(self) -> Iterator[None]:
        """While packaging: the SDK's own uploads (from_local_script) build their storage
        client with no endpoint option, so the endpoint travels the one way they read."""
        if not self.storage_endpoint:
            yield
            return
        before = os.environ.get(STORAGE_HOST_ENV)
        os.environ[STORAGE_HOST_ENV] = self.storage_endpoint
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(STORAGE_HOST_ENV, None)
            else:
                os.environ[STORAGE_HOST_ENV] = before

    def place(self, job_spec: Any) -> None:
        """Service account and network, as the SDK's run() would set them."""
        if self.service_account:
            job_spec.service_account = self.service_account
        if self.network:
            job_spec.network = self.network
