"""Running CustomJobs and custom-task TrainingPipelines in background threads.

A CustomJob runs its one replica (worker pool 0) as a local process: PENDING -> RUNNING ->
SUCCEEDED, or FAILED with error {code: 13, message: tail of stderr}; cancel gives CANCELLING ->
CANCELLED and terminates the process (SIGTERM, SIGKILL after the grace period). A TrainingPipeline
with the custom task runs a backing CustomJob, as Vertex does, and mirrors its state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format

from vertex_emulator.errors import EmulatorError, invalid
from vertex_emulator.runner import (
    LaunchError,
    Outputs,
    Runtime,
    WorkerProcess,
    fetch_packages,
    fuse_packages,
    output_dirs,
    plan,
)
from vertex_emulator.storage import gs_to_local
from vertex_emulator.store import Store, touch

log = logging.getLogger(__name__)

# JobState and PipelineState share these numbers.
PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLING, CANCELLED = 2, 3, 4, 5, 6, 7
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
CANCELLED_CODE, DEADLINE_CODE, INTERNAL_CODE = 1, 4, 13  # google.rpc.Code
CUSTOM_TASK = "custom_task_1.0.0.yaml"
_ANY_ROOT = Path("/emulator-root")  # where a URI would land is judged against any root


class Halted(Exception):
    """The emulator is stopping and keeps its workdir: the job keeps its state for the next
    start to carry it on (recovery.py)."""


@dataclass(frozen=True)
class Outcome:
    state: int
    code: int = 0
    message: str = ""


class Jobs:
    """The background thread of each running job and its cancel switch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._cancels: dict[str, threading.Event] = {}

    def start(
        self,
        name: str,
        work: Callable[[threading.Event], object],
        on_crash: Callable[[Exception], object],
    ) -> None:
        """Run `work(cancel_event)` in a thread; `on_crash(error)` if it raises (a bug)."""
        cancel = threading.Event()

        def body() -> None:
            try:
                work(cancel)
            except Halted:
                log.info("job %s left for the next start of the emulator", name)
            except Exception as err:  # the one place a job's unexpected error becomes its state
                log.exception("job %s crashed", name)
                on_crash(err)

        thread = threading.Thread(target=body, name=f"job-{name.rsplit('/', 1)[-1]}", daemon=True)
        with self._lock:
            self._threads[name] = thread
            self._cancels[name] = cancel
        thread.start()

    def alias(self, name: str, of: str) -> None:
        """Cancelling `name` cancels `of` (a pipeline's backing CustomJob runs in its thread)."""
        with self._lock:
            self._cancels[name] = self._cancels[of]

    def cancel(self, name: str) -> None:
        with self._lock:
            event = self._cancels.get(name)
        if event is not None:
            event.set()

    def stop(self, timeout_s: float) -> None:
        with self._lock:
            events, threads = list(self._cancels.values()), list(self._threads.values())
        for event in events:
            event.set()
        for thread in threads:
            thread.join(timeout=timeout_s)
            if thread.is_alive():
                log.warning("job thread %s did not stop within %.0fs", thread.name, timeout_s)


def check_job_spec(spec) -> None:
    """Refuse, at create, what the emulator cannot run: it runs one replica of worker pool 0."""
    pools = list(spec.worker_pool_specs)
    if not pools or pools[0].WhichOneof("task") is None:
        raise invalid(
            "job_spec.worker_pool_specs[0] needs a container_spec or python_package_spec."
        )
    if pools[0].replica_count > 1:
        raise invalid("The emulator runs one replica: worker_pool_specs[0].replica_count <= 1.")
    if any(pool.replica_count > 0 or pool.WhichOneof("task") for pool in pools[1:]):
        raise invalid("The emulator runs worker pool 0 only: leave the other worker pools empty.")
    for uri in pools[0].python_package_spec.package_uris:
        if not uri.startswith("gs://"):
            raise invalid(f"package_uris must be gs:// URIs, got {uri!r}.")
        _check_gs(uri, "package_uris")
    base = spec.base_output_directory.output_uri_prefix
    if base:
        if not base.startswith("gs://"):
            raise invalid(f"base_output_directory must be a gs:// URI, got {base!r}.")
        _check_gs(base, "base_output_directory.output_uri_prefix")
    task = pools[0].WhichOneof("task")
    for var in getattr(pools[0], task).env:
        if var.value.startswith("/gcs/"):
            _check_gs("gs://" + var.value[len("/gcs/") :], f"env {var.name}")


def _check_gs(uri: str, field: str) -> None:
    """400 for a URI whose local stand-in would lie outside the storage folder (bucket `..`)."""
    try:
        gs_to_local(uri, _ANY_ROOT)
    except ValueError as err:
        raise invalid(f"{field}: {err}.") from None


def job_dir(rt: Runtime, name: str) -> Path:
    collection, job_id = name.split("/")[-2:]
    return rt.workdir / "jobs" / f"{collection}-{job_id}"


def prepare_packages(rt: Runtime, spec, directory: Path) -> list[Path]:
    """Fetch pool 0's packages (package_uris, or /gcs/ archives its command pip-installs)."""
    pool = spec.worker_pool_specs[0]
    uris = list(pool.python_package_spec.package_uris) or fuse_packages(pool)
    return fetch_packages(rt, uris, directory / "packages") if uris else []


def run_replica(
    rt: Runtime, spec, directory: Path, cancel: threading.Event, on_start: Callable[[], object]
) -> Outcome:
    """Run worker pool 0 of a CustomJobSpec to its end; `on_start` once the process runs."""
    base = spec.base_output_directory.output_uri_prefix
    try:
        packages = prepare_packages(rt, spec, directory)
        outputs = output_dirs(rt, base, None) if base else None
        # Not set by Vertex outside tuning; keeps a reporting trainer out of /tmp/hypertune.
        env = {"CLOUD_ML_HP_METRIC_FILE": str(directory / "hypertune" / "output.metrics")}
        launch = plan(rt, spec.worker_pool_specs[0], directory, outputs, env, packages)
        process = WorkerProcess(launch)
    except (LaunchError, EmulatorError, OSError) as err:
        return Outcome(FAILED, INTERNAL_CODE, f"The replica workerpool0-0 could not start: {err}")
    on_start()
    outcome = supervise(rt, process, cancel, spec_timeout_s(spec))
    upload_outputs(rt, outputs)
    return outcome


def spec_timeout_s(spec) -> float | None:
    if spec.scheduling.HasField("timeout"):
        return spec.scheduling.timeout.ToTimedelta().total_seconds() or None
    return None


def supervise(
    rt: Runtime, process: WorkerProcess, cancel: threading.Event, timeout_s: float | None
) -> Outcome:
    """Wait for the replica, or stop it on cancel or timeout; bounded by the process's life."""
    started = time.monotonic()
    while (code := process.poll()) is None:
        if cancel.is_set():
            process.stop(rt.grace_s)
            if rt.halting.is_set():
                raise Halted
            return Outcome(CANCELLED, CANCELLED_CODE, "CANCELED")
        if timeout_s is not None and time.monotonic() - started >= timeout_s:
            process.stop(rt.grace_s)
            return Outcome(FAILED, DEADLINE_CODE, f"Job exceeded its timeout of {timeout_s:g}s.")
        cancel.wait(rt.poll_s)
    if code == 0:
        return Outcome(SUCCEEDED)
    tail = process.stderr_tail()
    message = f"The replica workerpool0-0 exited with a non-zero status of {code}."
    return Outcome(FAILED, INTERNAL_CODE, f"{message}\n{tail}" if tail else message)


def upload_outputs(rt: Runtime, outputs: Outputs | None) -> None:
    """Copy what the replica wrote under its base output directory up to the storage emulator."""
    if outputs is None or not outputs.base_uri:
        return
    try:
        rt.storage.upload_tree(rt.local(outputs.base_uri), outputs.base_uri)
    except (EmulatorError, OSError) as err:
        log.warning("could not copy outputs to %s: %s", outputs.base_uri, err)


def set_state(state: int, outcome: Outcome | None = None) -> Callable[[object], None]:
    """A Store.update change: the new state, its times, and error for FAILED/CANCELLED."""

    def change(job) -> None:
        if not (state == RUNNING and job.state == CANCELLING):  # a cancel may come first
            job.state = state
        if state == RUNNING and not job.HasField("start_time"):
            touch(job, "start_time")
        if state in TERMINAL:
            touch(job, "end_time")
        if outcome is not None and outcome.state in (FAILED, CANCELLED):
            job.error.code = outcome.code
            job.error.message = outcome.message

    return change


def run_custom_job(rt: Runtime, store: Store, name: str, cancel: threading.Event) -> Outcome:
    job = store.get(name)
    directory = job_dir(rt, name)
    outcome = run_replica(
        rt, job.job_spec, directory, cancel, lambda: store.update(name, set_state(RUNNING))
    )
    store.update(name, set_state(outcome.state, outcome))
    log.info("%s ended %s", name, outcome)
    return outcome


def pipeline_job_spec(pipeline, custom_job_spec_cls):
    """The CustomJobSpec inside a custom-task TrainingPipeline; ApiError(400) otherwise."""
    if not pipeline.training_task_definition.endswith(CUSTOM_TASK):
        raise invalid(f"The emulator runs only the custom task ({CUSTOM_TASK}) pipelines.")
    if pipeline.HasField("model_to_upload") or pipeline.HasField("input_data_config"):
        raise invalid("The emulator supports neither model_to_upload nor input_data_config.")
    inputs = json_format.MessageToDict(pipeline.training_task_inputs)
    spec = custom_job_spec_cls()
    try:
        json_format.ParseDict(inputs, spec, ignore_unknown_fields=False)
    except json_format.ParseError as err:
        raise invalid(f"Invalid training_task_inputs: {err}") from err
    check_job_spec(spec)
    return spec


def run_pipeline(
    rt: Runtime, store: Store, jobs: Jobs, name: str, cancel: threading.Event, custom_job
) -> None:
    """Run a custom-task pipeline through a backing CustomJob (`custom_job`, unsaved)."""
    pipeline = store.get(name)
    parent = name.rsplit("/", 2)[0]
    custom_job.state = PENDING
    backing = store.add(parent, "customJobs", custom_job).name
    jobs.alias(backing, name)

    def started(pipe) -> None:
        set_state(RUNNING)(pipe)
        pipe.training_task_metadata.struct_value.update({"backingCustomJob": backing})

    store.update(name, started)
    outcome = run_custom_job(rt, store, backing, cancel)
    store.update(name, set_state(outcome.state, outcome))
    log.info("%s (%s) ended %s", name, pipeline.display_name, outcome)
