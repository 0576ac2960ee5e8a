"""A restarted emulator carries on the jobs its previous run left unfinished (the store keeps
them in <workdir>/resources/), as Vertex does not lose a job when its client or a machine goes:

- a HyperparameterTuningJob goes on: ended trials are kept, a trial that was running is started
  again with its parameters and directories (a trainer that checkpoints to AIP_CHECKPOINT_DIR
  resumes there), and new trials are suggested as before (tuning.py, _carry_on);
- a CustomJob runs its replica again from the start, as Vertex restarts a replica whose VM was
  lost;
- a custom-task TrainingPipeline, and its backing CustomJob, end FAILED saying why;
- a job that was being cancelled ends CANCELLED.
Whatever the previous run's replicas left running is killed first (runner.stop_leftover).
"""

from __future__ import annotations

import logging

from vertex_emulator.jobs import (
    CANCELLED,
    CANCELLED_CODE,
    CANCELLING,
    FAILED,
    INTERNAL_CODE,
    TERMINAL,
    Outcome,
    job_dir,
    run_custom_job,
    set_state,
)
from vertex_emulator.runner import stop_leftover
from vertex_emulator.tuning import INFEASIBLE, TRIAL_SUCCEEDED, TuningJob

log = logging.getLogger(__name__)

RESTARTED = "The emulator restarted while this job ran"


def carry_on(api) -> list[str]:
    """Take up every unfinished job of `api`'s store; the names of those that go on."""
    store = api.store
    kept = (store.get(name) for name in store.names())
    # Models and endpoints have no state: only jobs are carried on.
    jobs = {job.name: job for job in kept if "state" in job.DESCRIPTOR.fields_by_name}
    unfinished = {name: job for name, job in jobs.items() if job.state not in TERMINAL}
    backing = _backing_jobs(unfinished)
    going_on = []
    for name, job in unfinished.items():
        collection = name.split("/")[-2]
        stop_leftover(job_dir(api.rt, name))
        if job.state == CANCELLING:
            _end(api, name, Outcome(CANCELLED, CANCELLED_CODE, "CANCELED"))
        elif collection == "trainingPipelines" or name in backing:
            _end(api, name, Outcome(FAILED, INTERNAL_CODE, f"{RESTARTED}; run it again."))
        elif collection == "hyperparameterTuningJobs":
            _start(api, name, lambda cancel, n=name: TuningJob(api.rt, store, n, cancel).run())
            going_on.append(name)
        else:
            _start(api, name, lambda cancel, n=name: run_custom_job(api.rt, store, n, cancel))
            going_on.append(name)
    if going_on:
        log.warning("carrying on %d job(s) after a restart: %s", len(going_on), going_on)
    return going_on


def _backing_jobs(unfinished: dict) -> set[str]:
    names = set()
    for name, job in unfinished.items():
        if name.split("/")[-2] == "trainingPipelines" and job.HasField("training_task_metadata"):
            backing = job.training_task_metadata.struct_value.fields.get("backingCustomJob")
            if backing is not None:
                names.add(backing.string_value)
    return names


def _start(api, name: str, work) -> None:
    api.jobs.start(name, work, lambda err: api.crashed(name, err))


def _end(api, name: str, outcome: Outcome) -> None:
    """End a job without running it again; its unfinished trials end INFEASIBLE."""

    def change(job) -> None:
        set_state(outcome.state, outcome)(job)
        for trial in getattr(job, "trials", ()):
            if trial.state not in (TRIAL_SUCCEEDED, INFEASIBLE):
                trial.state = INFEASIBLE
                trial.infeasible_reason = f"{RESTARTED}; the trial was stopped."

    api.store.update(name, change)
