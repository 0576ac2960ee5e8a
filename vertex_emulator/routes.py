"""The Vertex AI REST surface: create/get/list/cancel of three job collections, and the rows
of serving.py (models, endpoints, :predict).

Bodies are parsed strictly into the google.cloud.aiplatform_v1 protos (an unknown field is a
400, as a typo would be on Vertex); answers are those protos through MessageToDict (camelCase,
RFC3339 timestamps, int64 as strings, enums as full names, or ints when the query asks for
enum-encoding=int as the SDK does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qs

from google.protobuf import empty_pb2, json_format

from vertex_emulator.errors import ApiError, invalid
from vertex_emulator.jobs import (
    CANCELLING,
    FAILED,
    INTERNAL_CODE,
    PENDING,
    TERMINAL,
    Jobs,
    Outcome,
    check_job_spec,
    pipeline_job_spec,
    run_custom_job,
    run_pipeline,
    set_state,
)
from vertex_emulator.runner import Runtime
from vertex_emulator.serving import Serving
from vertex_emulator.specs import params_from_study
from vertex_emulator.store import Store
from vertex_emulator.suggest import check_algorithm
from vertex_emulator.tuning import TuningJob

COLLECTIONS = ("customJobs", "hyperparameterTuningJobs", "trainingPipelines")
_PARENT = r"projects/[^/]+/locations/[^/]+"
_COLLECTION_PATH = re.compile(rf"^/v1/({_PARENT})/({'|'.join(COLLECTIONS)})$")
_RESOURCE_PATH = re.compile(rf"^/v1/({_PARENT}/(?:{'|'.join(COLLECTIONS)})/[^/:]+)$")
_CANCEL_PATH = re.compile(rf"^/v1/({_PARENT}/(?:{'|'.join(COLLECTIONS)})/[^/:]+):cancel$")
_DISPLAY_NAME_FILTER = re.compile(r'^\s*(?:display_name|displayName)\s*=\s*"((?:[^"\\]|\\.)*)"\s*$')
INFO_PATH = "/dualtune-emulator/info"
OUTPUT_ONLY = ("state", "error", "start_time", "end_time", "trials", "training_task_metadata")


def resource_classes() -> dict:
    """The message class of each collection the emulator keeps (the store reads them back)."""
    from google.cloud.aiplatform_v1 import types  # heavy: imported when an emulator starts

    from vertex_emulator.serving import serving_classes

    return {
        "customJobs": types.CustomJob.pb(),
        "hyperparameterTuningJobs": types.HyperparameterTuningJob.pb(),
        "trainingPipelines": types.TrainingPipeline.pb(),
        **serving_classes(),
    }


class VertexApi:
    public_paths = (INFO_PATH,)  # answered without the token (guard.py)

    def __init__(self, rt: Runtime, store: Store, jobs: Jobs, info: dict) -> None:
        from google.cloud.aiplatform_v1 import types  # heavy: imported when an emulator starts

        self.rt, self.store, self.jobs, self.info = rt, store, jobs, info
        self.classes = resource_classes()
        self.custom_job_spec = types.CustomJobSpec.pb()
        self.serving = Serving(rt, store)
        self._routes = self.routes()

    def handle(self, method: str, path: str, query: str, body: bytes) -> tuple[int, dict]:
        """Serve one request: (HTTP status, JSON body); ApiError becomes its error body."""
        try:
            return 200, self._route(method, path, query, body)
        except ApiError as err:
            return err.http_status, err.body()

    def routes(self) -> list[tuple[str, re.Pattern, Callable]]:
        """(method, path pattern, handler(match, query, body, ints) -> answer): the routing
        table. A new resource (models, endpoints, :predict) is a few rows here."""
        return [
            ("GET", re.compile(f"^{INFO_PATH}$"), lambda m, q, b, i: dict(self.info)),
            ("POST", _COLLECTION_PATH, lambda m, q, b, i: _to_dict(self.create(*m.groups(), b), i)),
            ("GET", _COLLECTION_PATH, lambda m, q, b, i: self.list(*m.groups(), parse_qs(q), i)),
            ("GET", _RESOURCE_PATH, lambda m, q, b, i: _to_dict(self.store.get(m[1]), i)),
            ("POST", _CANCEL_PATH, lambda m, q, b, i: self.cancel(m[1], b) or {}),
            ("DELETE", _RESOURCE_PATH, _unimplemented),
            ("PATCH", _RESOURCE_PATH, _unimplemented),
            *self.serving.routes(_parse, _to_dict),  # models, endpoints, :predict (serving.py)
        ]

    def _route(self, method: str, path: str, query: str, body: bytes) -> dict:
        ints = "enum-encoding=int" in query
        matched = [(verb, pattern.match(path), run) for verb, pattern, run in self._routes]
        matched = [(verb, match, run) for verb, match, run in matched if match]
        for verb, match, run in matched:
            if verb == method:
                return run(match, query, body, ints)
        if not matched:
            raise ApiError(404, f"The emulator serves no {path}.")
        raise ApiError(405, f"Method {method} is not allowed on {path}.", "INVALID_ARGUMENT")

    def create(self, parent: str, collection: str, body: bytes):
        message = _parse(body, self.classes[collection]())
        if not message.display_name:
            raise invalid("display_name is required.")
        start = {
            "customJobs": self._custom_job,
            "hyperparameterTuningJobs": self._tuning_job,
            "trainingPipelines": self._pipeline,
        }[collection](message)
        for field in OUTPUT_ONLY:
            if field in message.DESCRIPTOR.fields_by_name:
                message.ClearField(field)
        message.state = PENDING
        stored = self.store.add(parent, collection, message)
        name = stored.name
        self.jobs.start(
            name, lambda cancel: start(name, cancel), lambda err: self.crashed(name, err)
        )
        return stored

    def _custom_job(self, job):
        check_job_spec(job.job_spec)
        return lambda name, cancel: run_custom_job(self.rt, self.store, name, cancel)

    def _tuning_job(self, job):
        study = job.study_spec
        if len(study.metrics) != 1 or not study.metrics[0].metric_id:
            raise invalid("study_spec.metrics needs exactly one metric with a metric_id.")
        check_algorithm(study.algorithm, params_from_study(study))
        if job.max_trial_count < 1 or job.parallel_trial_count < 1:
            raise invalid("max_trial_count and parallel_trial_count must be positive.")
        if job.max_failed_trial_count < 0:
            raise invalid("max_failed_trial_count must not be negative.")
        check_job_spec(job.trial_job_spec)
        return lambda name, cancel: TuningJob(self.rt, self.store, name, cancel).run()

    def _pipeline(self, pipeline):
        spec = pipeline_job_spec(pipeline, self.custom_job_spec)
        custom_job = self.classes["customJobs"]()
        custom_job.display_name = f"{pipeline.display_name}-custom-job"
        custom_job.job_spec.CopyFrom(spec)
        custom_job.labels.update(pipeline.labels)

        def run(name, cancel):
            run_pipeline(self.rt, self.store, self.jobs, name, cancel, custom_job)

        return run

    def crashed(self, name: str, err: Exception) -> None:
        outcome = Outcome(FAILED, INTERNAL_CODE, f"Emulator error: {err!r}")
        self.store.update(name, set_state(FAILED, outcome))

    def list(self, parent: str, collection: str, query: dict, ints: bool) -> dict:
        items = self.store.list(parent, collection)
        wanted = (query.get("filter") or [""])[0]
        if wanted.strip():
            match = _DISPLAY_NAME_FILTER.match(wanted)
            if not match:
                raise invalid(f'Unsupported filter {wanted!r}: only display_name="..." is.')
            display_name = re.sub(r"\\(.)", r"\1", match.group(1))
            items = [m for m in items if m.display_name == display_name]
        offset = _int_param(query, "pageToken", 0)
        size = _int_param(query, "pageSize", 0) or len(items) or 1
        page = items[offset : offset + size]
        answer: dict = {}
        if page:
            answer[collection] = [_to_dict(m, ints) for m in page]
        if offset + size < len(items):
            answer["nextPageToken"] = str(offset + size)
        return answer

    def cancel(self, name: str, body: bytes) -> None:
        if body.strip():
            _parse(body, empty_pb2.Empty())

        def change(job) -> None:  # checked and set under the store's lock
            if job.state in TERMINAL:
                raise ApiError(400, f"{name} has already ended.", "FAILED_PRECONDITION")
            set_state(CANCELLING)(job)

        self.store.update(name, change)
        self.jobs.cancel(name)


def _unimplemented(match, query, body, ints) -> dict:
    raise ApiError(501, f"{match[0]}: this method is not implemented by the emulator.")


def _parse(body: bytes, message):
    try:
        json_format.Parse(body.decode("utf-8") or "{}", message, ignore_unknown_fields=False)
    except (json_format.ParseError, UnicodeDecodeError) as err:
        raise invalid(f"Invalid JSON payload received. {err}") from err
    return message


def _to_dict(message, ints: bool) -> dict:
    return json_format.MessageToDict(message, use_integers_for_enums=ints)


def _int_param(query: dict, key: str, default: int) -> int:
    raw = (query.get(key) or [""])[0]
    if not raw:
        return default
    if not raw.isdigit():
        raise invalid(f"Invalid {key} {raw!r}.")
    return int(raw)
