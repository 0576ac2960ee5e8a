"""The Vertex AI backend: a HyperparameterTuningJob runs the study, the backend follows it.

run() = submit() + follow: the job is created once, then GET every poll_s; each snapshot becomes
trial events through JobFollower. Ctrl-C cancels the job (the CLI's --detach submits only, and
attach() follows a job submitted earlier, from any process). finalize() runs one CustomJob.

The job is created through the SDK's job client rather than HyperparameterTuningJob.run(
sync=False): that starts a non-daemon thread which polls until the job ends, so a detached
`dualtune tune` could not exit, and it would poll alongside ours.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from backends.base import (
    FAILED,
    STOPPED,
    Backend,
    FinalizeRequest,
    FinalizeResult,
    Sink,
    StudyEnded,
    StudyRequest,
    StudyStarted,
)
from backends.vertex.api import JobApi, RetryPolicy, explained
from backends.vertex.follow import INTERRUPTED, JOB_TERMINAL, JobFollower
from backends.vertex.packaging import JobSpec, Machine, custom_job, default_container_uri
from search_spaces.errors import BackendError

log = logging.getLogger(__name__)

POLL_S = 15.0  # real Vertex: trials take minutes; the emulator and tests use less
CANCEL_WAIT_S = 60.0  # after a cancel, how long to follow the job to CANCELLED


class VertexBackend(Backend):
    """Studies as Vertex AI HyperparameterTuningJobs; `api_endpoint` points at an emulator.

    `local_root` is where an emulator on this machine keeps gs:// paths (its workdir): finalize
    then reads the model and the trainer's metric file there instead of downloading.
    """

    name = "vertex"

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

    # -- tuning -------------------------------------------------------------------------------
    def run(self, request: StudyRequest, sink: Sink) -> StudyEnded:
        """Submit the study's job and follow it to its end; Ctrl-C cancels it."""
        name = self.submit(request, sink)
        return self._follow(name, request, sink, cancel_on_interrupt=True)

    def attach(self, job_name: str, request: StudyRequest, sink: Sink) -> StudyEnded:
        """Emit every event of a job submitted earlier (from its current state), then follow it
        until it ends. Ctrl-C stops following and leaves the job running (KeyboardInterrupt)."""
        api = self.api()
        with self.explain(f"reading {job_name}"):
            job = api.get_tuning_job(job_name)
        sink(self._study_started(request, job))
        return self._follow(job_name, request, sink, cancel_on_interrupt=False)

    def submit(self, request: StudyRequest, sink: Sink) -> str:
        """Create the study's HyperparameterTuningJob, emit StudyStarted; the job's name."""
        api = self.api()
        job = self._tuning_job(request)
        with self.explain(f"submitting the tuning job of study {request.study}"):
            created = api.create_tuning_job(self.parent, job._gca_resource)
        log.info("submitted %s", created.name)
        sink(self._study_started(request, created))
        return created.name

    def _tuning_job(self, request: StudyRequest) -> Any:
        from google.cloud import aiplatform

        from search_spaces import vertex_compiler as compiler

        space = request.space
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{self.staging_bucket}/dualtune/{request.study}/{stamp}"
        args = (*space.trainer.tuning_args, *request.extra_args)
        spec = JobSpec(f"{request.study}-trial", args, dict(request.env), base)
        budget = space.budget
        with self.explain("packaging the trainer"):
            trial_job = self.trainer_job(space.trainer, spec)
        job = aiplatform.HyperparameterTuningJob(
            display_name=request.study,
            custom_job=trial_job,
            metric_spec=compiler.metric_spec(space),
            parameter_spec=compiler.to_parameter_specs(space),
            max_trial_count=budget.max_trials,
            parallel_trial_count=budget.parallel_trials,
            # Local: the study fails with MORE than max_failed_trials failures; Vertex fails it
            # when the count is REACHED (and 0 would mean "Vertex decides").
            max_failed_trial_count=budget.max_failed_trials + 1,
            search_algorithm=compiler.search_algorithm(space),
            measurement_selection=compiler.measurement_selection(space),
        )
        compiler.apply_early_stopping(job._gca_resource.study_spec, space)
        self.place(job._gca_resource.trial_job_spec)
        return job

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

    def _study_started(self, request: StudyRequest, job: Any) -> StudyStarted:
        attrs = {
            "study_key": job.name,
            "job": job.name,
            "console_url": self.console_url(job.name),
            "output_dir": job.trial_job_spec.base_output_directory.output_uri_prefix,
        }
        space = request.space
        return StudyStarted(request.study, self.name, space.algorithm, space, attrs)

    # -- following ----------------------------------------------------------------------------
    def _follow(
        self, name: str, request: StudyRequest, sink: Sink, cancel_on_interrupt: bool
    ) -> StudyEnded:
        api = self.api()
        base = ""
        follower = JobFollower(request.space, sink)
        try:
            while True:
                with self.explain(f"following {name}"):
                    job = api.get_tuning_job(name)
                base = base or job.trial_job_spec.base_output_directory.output_uri_prefix
                follower.base_output_dir = base
                follower.update(job)
                if int(job.state) in JOB_TERMINAL:
                    return self._ended(follower.study_ended(request.study, job), sink)
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            if not cancel_on_interrupt:
                raise
            return self._cancel(name, request, sink, follower)
        except BackendError as err:
            self._ended(StudyEnded(request.study, FAILED, *follower.best(), str(err)), sink)
            raise

    def _cancel(
        self, name: str, request: StudyRequest, sink: Sink, follower: JobFollower
    ) -> StudyEnded:
        """Cancel the job, follow it (bounded) until Vertex says CANCELLED, stop the rest."""
        from google.api_core import exceptions

        api = self.api()
        log.warning("cancelling %s", name)
        follower.interrupted = True
        try:
            api.cancel_tuning_job(name)
        except exceptions.GoogleAPICallError as exc:  # e.g. it ended meanwhile: its state tells
            log.warning("could not cancel %s: %s", name, exc)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            try:
                with self.explain(f"following {name}"):
                    job = api.get_tuning_job(name)
            except BackendError as err:  # cancelled or not, the user asked to stop: stop
                log.warning("%s", err)
                break
            follower.update(job)
            if int(job.state) in JOB_TERMINAL:
                break
            time.sleep(min(self.poll_s, 1.0))
        follower.stop_unfinished(INTERRUPTED)
        best_id, best_value = follower.best()
        return self._ended(
            StudyEnded(request.study, STOPPED, best_id, best_value, INTERRUPTED), sink
        )

    @staticmethod
    def _ended(ended: StudyEnded, sink: Sink) -> StudyEnded:
        sink(ended)
        return ended

    # -- finalize -----------------------------------------------------------------------------
    def finalize(self, request: FinalizeRequest, sink: Sink) -> FinalizeResult:
        """One CustomJob with the finalize args and the best parameters; see finalize.py."""
        from backends.vertex.finalize import run_finalize

        return run_finalize(self, request, sink)
