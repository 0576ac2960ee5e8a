"""The Vertex AI backend: a HyperparameterTuningJob runs the study, the backend follows it.

run() = submit() + follow: the job is created once, then GET every poll_s; each snapshot becomes
trial events through JobFollower. Ctrl-C cancels the job (the CLI's --detach submits only, and
attach() follows a job submitted earlier, from any process). finalize() runs one CustomJob.

The job is created through the SDK's job client rather than HyperparameterTuningJob.run(
sync=False): that starts a non-daemon thread which polls until the job ends, so a detached
`dualtune tune` could not exit, and it would poll alongside ours.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from backends.base import (
    FAILED,
    STOPPED,
    Execution,
    ExecutionResult,
    FinalizeRequest,
    FinalizeResult,
    JobBackend,
    Sink,
    StudyEnded,
    StudyRequest,
    StudyStarted,
)
from backends.vertex.follow import JOB_TERMINAL, JobFollower
from backends.vertex.packaging import JobSpec, check_trainer, read_text
from backends.vertex.session import POLL_S, VertexSession
from backends.vertex.settings import VertexSettings, full_job_name
from trialkit.errors import BackendError, interruption
from trialkit.repeat import RESULT_FILE, wrapper_args

log = logging.getLogger(__name__)


def repeat_of(space: Any) -> tuple[str, ...]:
    """trialkit.repeat's args when each trial runs several times (executions_per_trial), else
    (): Vertex runs one container per trial, so the executions run inside it."""
    n = space.trust.executions_per_trial
    if n <= 1:
        return ()
    metric, trainer = space.metric, space.trainer
    selection, seed_flag = space.measurement_selection, trainer.seed_flag
    return wrapper_args(n, metric.tag, metric.goal, selection, seed_flag, trainer.module)


# VertexSettings fields that the session takes as they are.
JOB_SETTINGS = (
    "machine_type",
    "accelerator_type",
    "accelerator_count",
    "container_uri",
    "service_account",
    "network",
)
CANCEL_WAIT_S = 60.0  # after a cancel, how long to follow the job to CANCELLED


class VertexBackend(JobBackend):
    """Studies as Vertex AI HyperparameterTuningJobs, finalize as a CustomJob, both through one
    VertexSession (session.py). Build it from VertexSettings with from_settings(); the keyword
    form is the session's own (tests point it at an emulator with a short poll)."""

    name = "vertex"

    def __init__(self, project: str, region: str, staging_bucket: str, **session: Any) -> None:
        self.session = VertexSession(project, region, staging_bucket, **session)
        self.settings: VertexSettings | None = None

    @classmethod
    def from_settings(cls, settings: VertexSettings) -> VertexBackend:
        """The backend for `settings`, resolved (given values, then defaults); raises UserError
        naming a missing or wrong setting."""
        settings = settings.resolve()
        job_settings = {name: getattr(settings, name) for name in JOB_SETTINGS}
        backend = cls(
            settings.project,
            settings.region,
            settings.staging_bucket,
            api_endpoint=settings.api_endpoint,
            storage_endpoint=settings.storage_endpoint,
            token_file=settings.token_file,
            poll_s=settings.poll_s or POLL_S,
            **job_settings,
        )
        backend.settings = settings
        return backend

    def preflight(self, request: StudyRequest) -> None:
        """What Vertex would refuse, refused here first: before anything is uploaded. That
        includes a parameter or seed flag the trainer does not list, when its --help answers
        on this machine (backends/trainer_check.py)."""
        from backends.trainer_check import check_shipped_trainer
        from search_spaces import vertex_compiler

        vertex_compiler.search_algorithm(request.space)  # hyperband: a one-line SpaceError
        space = request.space
        check_trainer(space.trainer, space.source, space.trust.executions_per_trial)
        if self.settings is None or self.settings.check_trainer:
            check_shipped_trainer(space, request.env, request.extra_args)

    def record(self) -> dict[str, Any]:
        return self.settings.record() if self.settings else {}

    # -- tuning -------------------------------------------------------------------------------
    def run(self, request: StudyRequest, sink: Sink) -> StudyEnded:
        """Submit the study's job and follow it to its end; Ctrl-C cancels it."""
        name = self.submit(request, sink)
        return self._follow(name, request, sink, cancel_on_interrupt=True)

    def attach(self, job: str, request: StudyRequest, sink: Sink) -> StudyEnded:
        """Emit every event of a job submitted earlier (from its current state), then follow it
        until it ends. Ctrl-C stops following and leaves the job running (KeyboardInterrupt)."""
        api = self.session.api()
        with self.session.explain(f"reading {job}"):
            snapshot = api.get_tuning_job(job)
        sink(self._study_started(request, snapshot))
        return self._follow(job, request, sink, cancel_on_interrupt=False)

    def job_name(self, job: str) -> str:
        """projects/P/locations/L/hyperparameterTuningJobs/ID, from a bare ID too."""
        return full_job_name(job, None, self.settings)

    def submit(self, request: StudyRequest, sink: Sink) -> str:
        """Create the study's HyperparameterTuningJob, emit StudyStarted; the job's name."""
        api = self.session.api()
        job = self._tuning_job(request)
        with self.session.explain(f"submitting the tuning job of study {request.study}"):
            created = api.create_tuning_job(self.session.parent, job._gca_resource)
        log.info("submitted %s", created.name)
        sink(self._study_started(request, created))
        return created.name

    def _tuning_job(self, request: StudyRequest) -> Any:
        from google.cloud import aiplatform

        from search_spaces import vertex_compiler as compiler

        space = request.space
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{self.session.staging_bucket}/dualtune/{request.study}/{stamp}"
        args = (*space.trainer.tuning_args, *request.extra_args)
        spec = JobSpec(f"{request.study}-trial", args, dict(request.env), base, repeat_of(space))
        budget = space.budget
        with self.session.explain("packaging the trainer"):
            trial_job = self.session.trainer_job(space.trainer, spec)
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
        self.session.place(job._gca_resource.trial_job_spec)
        return job

    def _study_started(self, request: StudyRequest, job: Any) -> StudyStarted:
        space = request.space
        return StudyStarted(
            request.study,
            self.name,
            space.algorithm,
            space,
            job=job.name,
            console_url=self.session.console_url(job.name),
            output_dir=job.trial_job_spec.base_output_directory.output_uri_prefix,
        )

    # -- following ----------------------------------------------------------------------------
    def _follow(
        self, name: str, request: StudyRequest, sink: Sink, cancel_on_interrupt: bool
    ) -> StudyEnded:
        api = self.session.api()
        base = ""
        follower = JobFollower(request.space, sink, execution_curves=self._execution_curves)
        try:
            while True:
                with self.session.explain(f"following {name}"):
                    job = api.get_tuning_job(name)
                base = base or job.trial_job_spec.base_output_directory.output_uri_prefix
                follower.base_output_dir = base
                follower.update(job)
                if int(job.state) in JOB_TERMINAL:
                    return self._ended(follower.study_ended(request.study, job), sink)
                time.sleep(self.session.poll_s)
        except KeyboardInterrupt as exc:
            if not cancel_on_interrupt:
                raise
            return self._cancel(name, request, sink, follower, interruption(exc))
        except BackendError as err:
            self._ended(StudyEnded(request.study, FAILED, *follower.best(), str(err)), sink)
            raise

    def _execution_curves(self, trial_dir: str) -> list[dict[int, float]]:
        """What trialkit.repeat wrote of a trial's executions ([] when it wrote nothing)."""
        text = read_text(f"{trial_dir}/{RESULT_FILE}", self.session.storage())
        curves = json.loads(text)["curves"] if text else []
        return [{int(step): float(value) for step, value in curve} for curve in curves]

    def _cancel(
        self, name: str, request: StudyRequest, sink: Sink, follower: JobFollower, why: str
    ) -> StudyEnded:
        """Cancel the job, follow it (bounded) until Vertex says CANCELLED, stop the rest."""
        from google.api_core import exceptions

        api = self.session.api()
        log.warning("cancelling %s", name)
        follower.interrupted = f"{why}; the Vertex job was cancelled"
        try:
            api.cancel_tuning_job(name)
        except exceptions.GoogleAPICallError as exc:  # e.g. it ended meanwhile: its state tells
            log.warning("could not cancel %s: %s", name, exc)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            try:
                with self.session.explain(f"following {name}"):
                    job = api.get_tuning_job(name)
            except BackendError as err:  # cancelled or not, the user asked to stop: stop
                log.warning("%s", err)
                break
            follower.update(job)
            if int(job.state) in JOB_TERMINAL:
                break
            time.sleep(min(self.session.poll_s, 1.0))
        follower.stop_unfinished(follower.interrupted)
        best_id, best_value = follower.best()
        return self._ended(
            StudyEnded(request.study, STOPPED, best_id, best_value, follower.interrupted), sink
        )

    @staticmethod
    def _ended(ended: StudyEnded, sink: Sink) -> StudyEnded:
        sink(ended)
        return ended

    # -- finalize -----------------------------------------------------------------------------
    def finalize(self, request: FinalizeRequest, sink: Sink) -> FinalizeResult:
        """One CustomJob with the finalize args and the best parameters; see finalize.py."""
        from backends.vertex.finalize import run_finalize

        check_trainer(request.space.trainer, str(request.space.source))
        result = run_finalize(self.session, request, sink)
        if not request.register:
            return result
        from backends.vertex.model_registry import register_model

        return register_model(self.session, request, result)

    # -- serving (dualtune deploy/predict --backend vertex) -------------------------------------
    def deploy_model(self, model: str, **options: Any) -> Any:
        """Deploy `model` (projects/.../models/ID@VERSION) to an endpoint found by display name
        or created; options: DeployRequest's (backends/vertex/endpoints.py). Returns Deployed."""
        from backends.vertex.endpoints import DeployRequest, deploy_version
        from backends.vertex.model_registry import label_value

        name, _, version = model.partition("@")
        labels = {k: label_value(v) for k, v in (options.pop("labels", None) or {}).items()}
        request = DeployRequest(name, version, labels=labels, **options)
        return deploy_version(self.session, request)

    def find_endpoint(self, name: str, endpoint_id: str | None = None) -> str | None:
        """The resource name of the endpoint `endpoint_id` names, or displayed as `name`."""
        from backends.vertex.endpoints import find_endpoint

        found = find_endpoint(self.session, name, endpoint_id)
        return found.resource_name if found is not None else None

    def prediction_target(self, endpoint: str) -> Any:
        """A predict Target (dualtune/predict.py) for the endpoint."""
        from backends.vertex.endpoints import EndpointTarget

        return EndpointTarget(self.session, endpoint)

    # -- executions (the baseline, the confirmations) ----------------------------------------
    def execute(self, execution: Execution, sink: Sink) -> ExecutionResult:
        return self.execute_all([execution], sink)[0]

    def execute_all(
        self, executions: list[Execution], sink: Sink, parallel: int = 1
    ) -> list[ExecutionResult]:
        """Each execution a CustomJob beside the tuning job, `parallel` at a time (execute.py)."""
        from backends.vertex.execute import run_executions

        for space in {id(e.space): e.space for e in executions}.values():
            check_trainer(space.trainer, str(space.source))
        return run_executions(self.session, executions, sink, parallel)
