"""The Vertex AI calls the backend makes, with retries for transient answers and one clear line
for the errors a person has to fix.

429 and 5xx answers (and dropped connections) are retried with bounded exponential backoff;
everything else, and a 429 that outlasts the retries (a quota), becomes a BackendError that names
what to fix: a role, a quota, a flag. In one place, as Keras Tuner maps trial exceptions.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from trialkit.errors import BackendError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for transient answers: initial_s doubling up to maximum_s, deadline_s in all."""

    initial_s: float = 1.0
    maximum_s: float = 16.0
    deadline_s: float = 120.0

    def retry(self) -> Any:
        from google.api_core import exceptions, retry

        transient = (
            exceptions.TooManyRequests,  # 429, ResourceExhausted included
            exceptions.InternalServerError,
            exceptions.BadGateway,
            exceptions.ServiceUnavailable,
            exceptions.GatewayTimeout,
            _connection_error(),
        )
        return retry.Retry(
            predicate=retry.if_exception_type(*transient),
            initial=self.initial_s,
            maximum=self.maximum_s,
            multiplier=2.0,
            timeout=self.deadline_s,
            on_error=lambda exc: log.warning("Vertex AI answered %s; retrying", _first_line(exc)),
        )


def _connection_error() -> type[Exception]:
    import requests

    return requests.exceptions.ConnectionError


@contextlib.contextmanager
def explained(action: str, project: str, region: str) -> Iterator[None]:
    """Turn an API or credentials error raised while doing `action` into one BackendError line."""
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    try:
        yield
    except BackendError:
        raise
    except exceptions.RetryError as exc:
        cause = exc.cause
        if isinstance(cause, exceptions.TooManyRequests):
            raise BackendError(_explain(action, cause, project, region)) from None
        raise BackendError(
            f"{action}: Vertex AI kept answering {_first_line(cause or exc)}; "
            f"try again later (status: https://status.cloud.google.com)"
        ) from None
    except exceptions.GoogleAPICallError as exc:
        raise BackendError(_explain(action, exc, project, region)) from None
    except auth_exceptions.DefaultCredentialsError:
        raise BackendError(
            f"{action}: no Google credentials found; run "
            f"`gcloud auth application-default login` (or use --emulator)"
        ) from None
    except _connection_error() as exc:
        raise BackendError(f"{action}: cannot reach Vertex AI ({_first_line(exc)})") from None


def _explain(action: str, exc: Exception, project: str, region: str) -> str:
    from google.api_core import exceptions

    said = _first_line(exc)
    if isinstance(exc, exceptions.Forbidden):
        return (
            f"{action}: permission denied ({said}); grant the caller roles/aiplatform.user on "
            f"project {project} and roles/storage.objectAdmin on the staging bucket (and "
            f"roles/iam.serviceAccountUser on --service-account if given)"
        )
    if isinstance(exc, exceptions.Unauthorized):
        return f"{action}: not authenticated ({said}); run `gcloud auth application-default login`"
    if isinstance(exc, exceptions.TooManyRequests):
        return (
            f"{action}: quota exhausted in {region} ({said}); request a higher Vertex AI quota "
            f"for project {project} (IAM & Admin > Quotas), or lower --parallel-trials, or use "
            f"another --machine-type or --region"
        )
    if isinstance(exc, exceptions.NotFound):
        return (
            f"{action}: not found ({said}); check --project, --region and the job name, and "
            f"that the Vertex AI API is enabled in project {project}"
        )
    if isinstance(exc, exceptions.BadRequest):
        return (
            f"{action}: Vertex AI refused the request ({said}); fix the flag or search-space "
            f"field it names"
        )
    return f"{action}: Vertex AI error {said}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class JobApi:
    """Create, get and cancel the two job kinds, every call under the retry policy."""

    def __init__(self, region: str, retry: RetryPolicy, credentials: Any = None) -> None:
        from google.cloud.aiplatform import initializer, utils

        self.client = initializer.global_config.create_client(
            client_class=utils.JobClientWithOverride,
            credentials=credentials,
            location_override=region,
        )
        self.retry = retry.retry()

    def create_tuning_job(self, parent: str, job: Any) -> Any:
        return self.client.create_hyperparameter_tuning_job(
            parent=parent, hyperparameter_tuning_job=job, retry=self.retry
        )

    def get_tuning_job(self, name: str) -> Any:
        return self.client.get_hyperparameter_tuning_job(name=name, retry=self.retry)

    def cancel_tuning_job(self, name: str) -> None:
        self.client.cancel_hyperparameter_tuning_job(name=name, retry=self.retry)

    def create_custom_job(self, parent: str, job: Any) -> Any:
        return self.client.create_custom_job(parent=parent, custom_job=job, retry=self.retry)

    def get_custom_job(self, name: str) -> Any:
        return self.client.get_custom_job(name=name, retry=self.retry)

    def cancel_custom_job(self, name: str) -> None:
        self.client.cancel_custom_job(name=name, retry=self.retry)
