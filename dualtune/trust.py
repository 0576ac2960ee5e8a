"""Results you can trust: after the search, the guess (the trainer's own defaults) runs as a
baseline at several training seeds, the top trials are re-run at fresh seeds, and
dualtune/verdict.py names the winner. Written once for every backend: each backend only runs
executions (Backend.execute_all); this module decides which, and in what order.

The flow wraps the study's sink: it passes every event on, notes each trial's parameters and
score, and holds the backend's StudyEnded back until the verdict is in, so the study run ends
(in MLflow, study.json and the display) with its verdict. The baseline and the confirmations
run in one batch after the search, up to parallel_trials at a time: they are what the verdict
compares with each other, so they run side by side under the same load, and every slot is
used. (Run before the search, the baseline would show the guess early, but it would hold the
first trials back by the same time.)

Resume: an execution that completed is in study.json (StudyRecorder) and is not run again; its
score is taken from there. Executions keep stable ids and seeds (trialkit.executions.run_seeds),
so a resumed study re-runs exactly the ones that did not complete.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from backends.base import (
    BASELINE,
    COMPLETED,
    CONFIRMATION,
    FAILED,
    STOPPED,
    Backend,
    Event,
    Execution,
    Sink,
    StudyEnded,
    StudyRequest,
    StudyVerdict,
    TrialEnded,
    TrialStarted,
    ranked,
    usable,
)
from dualtune import study_record
from dualtune.verdict import Verdict, decide
from trialkit.executions import run_seeds, study_base

log = logging.getLogger(__name__)

EXECUTIONS = "executions"  # study.json: execution id -> {role, status, final, trial_id}
VERDICT = "verdict"  # study.json: the verdict's numbers and words


class TrustFlow:
    """The sink between a backend and the recorders during a study (see the module doc)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.params: dict[str, dict[str, Any]] = {}
        self.trials: dict[str, tuple[str, float | None]] = {}  # id -> (status, final value)
        self.ended: StudyEnded | None = None

    @property
    def scores(self) -> dict[str, float | None]:
        """Each ended trial's final value, None where it is not usable (trialkit.status)."""
        return {k: final if usable(s, final) else None for k, (s, final) in self.trials.items()}

    def __call__(self, event: Event) -> None:
        if isinstance(event, StudyEnded):
            self.ended = event  # held back until the verdict is in
            return
        if isinstance(event, TrialStarted):
            self.params[event.trial_id] = dict(event.params)
        elif isinstance(event, TrialEnded):
            self.trials[event.trial_id] = (event.status, event.final_value)
        self.sink(event)


def run_with_trust(
    call: Callable[[StudyRequest, Sink], Any],
    backend: Backend,
    request: StudyRequest,
    sink: Sink,
    record: study_record.StudyRecord,
) -> Any:
    """`call(request, sink)` (a backend's run or attach), then the baseline, the confirmations
    and the verdict; StudyEnded last. A submitted (detached) study returns at once: its
    verdict comes when it is attached to."""
    flow = TrustFlow(sink)
    result = call(request, flow)
    ended = flow.ended
    if ended is None:
        return result
    if ended.status == COMPLETED:
        try:
            verdict = conclude(backend, request, flow, record)
            if verdict.winner is None:  # nothing to finalize: the study did not do its job
                tag = request.space.metric.tag
                why = f"no trial and no baseline run produced a usable {tag}"
                ended = dataclasses.replace(ended, status=FAILED, reason=why)
        except KeyboardInterrupt:
            why = "interrupted during the baseline and confirmation runs; --resume finishes them"
            ended = dataclasses.replace(ended, status=STOPPED, reason=why)
        except BaseException:
            sink(dataclasses.replace(ended, status="FAILED", reason="the verdict runs failed"))
            raise
    sink(ended)
    return ended


def conclude(
    backend: Backend, request: StudyRequest, flow: TrustFlow, record: study_record.StudyRecord
) -> Verdict:
    """Run what is missing of the baseline and the confirmations; emit the verdict."""
    space = request.space
    done = dict(record.meta().get(EXECUTIONS) or {})
    baseline = baseline_executions(request)
    confirmations = confirmation_executions(request, flow.trials, flow.params)
    todo = [e for e in (*baseline, *confirmations) if done.get(e.id, {}).get("status") != COMPLETED]
    if todo:
        results = backend.execute_all(todo, flow.sink, space.budget.parallel_trials)
        for execution, result in zip(todo, results, strict=True):
            done[execution.id] = {"final": result.final_value, "status": result.status}
    finals = {key: _usable_final(value) for key, value in done.items()}
    confirmed: dict[str, list[float | None]] | None = None
    if space.trust.confirm.runs:
        confirmed = {}
        for e in confirmations:
            confirmed.setdefault(str(e.trial_id), []).append(finals.get(e.id))
    verdict = decide(
        [finals.get(e.id) for e in baseline], flow.scores, confirmed, space.metric.goal
    )
    flow.sink(verdict_event(verdict))
    log.info("verdict: %s", verdict.words)
    return verdict


def baseline_executions(request: StudyRequest) -> list[Execution]:
    """The guess, `trust.baseline.runs` times: tuning args, a seed each, no parameter flags."""
    trainer = request.space.trainer
    seeds = run_seeds("baseline", request.space.trust.baseline.runs, study_base(request.study))
    return [
        _execution(request, BASELINE, f"baseline-{i}", {}, seed, trainer.tuning_args, i)
        for i, seed in enumerate(seeds, 1)
    ]


def confirmation_executions(
    request: StudyRequest,
    trials: dict[str, tuple[str, float | None]],
    params: dict[str, dict[str, Any]],
) -> list[Execution]:
    """The top `confirm.top` usable trials, `confirm.repeats` times each at fresh seeds."""
    space = request.space
    confirm = space.trust.confirm
    if not confirm.runs:
        return []
    ended = ((k, status, final) for k, (status, final) in trials.items())
    top = [k for k, _ in ranked(ended, space.metric.minimize)][: confirm.top]
    found = []
    for trial_id in top:
        values = space.cast_values(params.get(trial_id, {}))
        seeds = run_seeds(f"confirm/{trial_id}", confirm.repeats, study_base(request.study))
        for i, seed in enumerate(seeds, 1):
            execution = _execution(
                request, CONFIRMATION, f"confirm-{trial_id}-{i}", values, seed,
                space.trainer.tuning_args, i,
            )  # fmt: skip
            found.append(dataclasses.replace(execution, trial_id=trial_id))
    return found


def _execution(
    request: StudyRequest,
    role: str,
    execution_id: str,
    params: dict[str, Any],
    seed: int,
    args: tuple[str, ...],
    number: int,
) -> Execution:
    return Execution(
        role,
        execution_id,
        request.study,
        request.space,
        params,
        args,
        request.workdir,
        seed=seed,
        seed_args=request.space.trainer.seed_args(seed),
        extra_args=request.extra_args,
        env=dict(request.env),
        number=number,
    )


def _usable_final(entry: dict[str, Any]) -> float | None:
    final = entry.get("final")
    return final if usable(entry.get("status", ""), final) else None


def verdict_event(verdict: Verdict) -> StudyVerdict:
    return StudyVerdict(
        winner=verdict.winner,
        noise=verdict.noise,
        improvement_pct=verdict.improvement_pct,
        guess_mean=verdict.guess.mean if verdict.guess else None,
        guess_runs=verdict.guess.n if verdict.guess else 0,
        best_line=verdict.best_line,
        words=verdict.words,
    )
