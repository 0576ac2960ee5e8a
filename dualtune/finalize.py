"""`dualtune finalize`: retrain the study's winner to completion; the MLflow recorder records
it (its run, metrics, model and registered version: FinalizeRecorder).

The winner comes from MLflow (the one record both backends write), so a study tuned on either
backend can be finalized on either: the study run's WINNER tag, a trial id or `baseline` (the
guess won: the trainer's defaults are trained, with no parameter flags at all). A study recorded
before studies had a verdict has no such tag: its best trial is trained, as then.

A finalize whose process was killed (SIGKILL, out of memory, a power cut) cannot end its MLflow
run: it stays RUNNING. Every finalize run names its process (host, pid and the pid's start
time: FINALIZE_PROCESS), and the next finalize of the study on that host ends those whose
process is gone: FINISHED when it had registered its version (registering is its last step),
else FAILED with why. A run of another host, or of a live process, is left alone.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import Backend, FinalizeRequest
from dualtune import mlflow_layout as layout
from dualtune import study_record
from dualtune.mlflow_recorder import FinalizeRecorder, settle_interrupted_finalize
from dualtune.overrides import recorded_space
from dualtune.report import best_trial, study_runs
from dualtune.tracking import client, resolve_tracking_uri
from trialkit.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finalized:
    """What finalize made: the MLflow run, the registered model and its version."""

    run_id: str
    model: str
    version: str
    trial_id: str
    params: dict[str, Any]
    vertex_model: str | None = None  # the Vertex Model Registry's model@version, when uploaded


def finalize_study(
    record: study_record.StudyRecord,
    backend: Backend,
    extra: tuple[str, ...],
    env: dict[str, str],
    tracking_uri: str | None,
    say: Callable[[str], None],
    register: bool = True,
) -> Finalized:
    """Retrain the study's best trial with `backend`, record it in MLflow, register it."""
    uri, _ = resolve_tracking_uri(tracking_uri)
    meta = record.meta()
    space = recorded_space(record.space_file, meta)
    mlflow_client = client(uri)
    parent, rows = study_runs(mlflow_client, record.name)
    best, why = winner(parent, rows)
    params = space.cast_values(best.params) if best is not None else {}
    winner_id = best.trial_id if best is not None else layout.WINNER_GUESS
    request = FinalizeRequest(
        record.name, space, params, record.path.resolve(), extra, env, winner_id, register
    )
    if best is None:
        say(f"finalizing study {record.name}: the guess won ({why}): the trainer's defaults")
    else:
        say(
            f"finalizing study {record.name}: trial {best.trial_id}, {why} ({space.metric.tag}="
            f"{best.final:.4g}) {params}"
        )
    settle_orphans(mlflow_client, record.name, say)
    recorder = FinalizeRecorder(
        mlflow_client, parent, best, params, backend.name, space.metric.tag, this_process()
    )
    try:
        result = backend.finalize(request, recorder.handle)
    except BaseException:
        recorder.failed()
        raise
    version = recorder.finished(result)
    vertex = f"{result.registry_model}@{result.registry_version}" if result.registry_model else None
    return Finalized(recorder.run_id, record.name, version, winner_id, params, vertex)


def winner(parent: Any, rows: list[Any]) -> tuple[Any, str]:
    """The trial to train (None: the guess) and why: the study's verdict, or for a study
    recorded without one its best trial."""
    trust = layout.study_trust(parent)
    if trust.winner is None:
        return best_trial(rows), "the best trial (the study has no verdict)"
    if trust.winner == layout.WINNER_GUESS:
        return None, "no trial beat it beyond noise"
    found = [row for row in rows if row.trial_id == trust.winner]
    if not found:
        raise UserError(
            f"--study: the study's winner, trial {trust.winner}, has no run in MLflow; "
            f"check --tracking-uri"
        )
    return found[0], "the study's confirmed winner"


def settle_orphans(mlflow_client: Any, study: str, say: Callable[[str], None]) -> None:
    """End the study's finalize runs left RUNNING by a process of this host that is gone."""
    for run in layout.running_finalize_runs(mlflow_client, study, 0):
        process = layout.finalize_process(run)
        if not process or not process_gone(process):
            continue
        host_pid = process.rsplit(":", 1)[0]
        reason = f"interrupted: its process ({host_pid}) ended without ending the run"
        version = settle_interrupted_finalize(mlflow_client, run, reason)
        say(
            f"finalize: run {run.info.run_id} was left RUNNING by a finalize that is gone "
            f"({host_pid}); "
            + (f"it had registered version {version}: FINISHED" if version else "marked FAILED")
        )


def this_process() -> str:
    """`host:pid:start` of this process (start: its start time in clock ticks, from /proc)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_started(pid) or ''}"


def process_gone(process: str) -> bool:
    """Whether the `host:pid:start` process has ended. Only one of this host can be known to
    have: a pid that no longer exists, a zombie, or a pid now another process's (another start
    time). Anything that cannot be read counts as alive."""
    host, _, rest = process.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    now = _stat(pid)
    if now is None:
        return False  # no /proc: kill says it exists
    state, started = now
    return state == "Z" or bool(start) and started != start


def _started(pid: int) -> str | None:
    found = _stat(pid)
    return found[1] if found else None


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of pid from /proc/PID/stat; None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)
