"""Reading studies back from MLflow: their trials, best first (`dualtune trials`, `compare`,
finalize). Where they are and how they are found is dualtune/mlflow_layout.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualtune import mlflow_layout as layout
from dualtune import study_record
from dualtune.display import counted, number, sig
from dualtune.mlflow_layout import TrialRow, backend_of, find_study, metric_of, trials
from dualtune.tracking import store_client
from trialkit.errors import UserError
from trialkit.status import usable


def study_runs(mlflow_client: Any, study: str) -> tuple[Any, list[TrialRow]]:
    """The study's (latest) parent run and its trial rows, best first."""
    parent = find_study(mlflow_client, study)
    return parent, trial_rows(mlflow_client, parent)


def trial_rows(mlflow_client: Any, parent: Any) -> list[TrialRow]:
    """The study's trials, best first, each with its metric history (read in bulk)."""
    _, minimize = metric_of(parent)
    return sorted(trials(mlflow_client, parent), key=lambda r: _rank(r, minimize))


def _rank(row: TrialRow, minimize: bool) -> tuple:
    """Usable trials first (trialkit.status.usable), best value first, then by number."""
    ok = usable(row.status, row.final)
    value = (row.final if minimize else -row.final) if ok else 0.0
    return (not ok, value, row.number)


def best_trial(rows: list[TrialRow]) -> TrialRow:
    """The first usable trial of `rows` (trial_rows lists them best first)."""
    for row in rows:
        if usable(row.status, row.final):
            return row
    raise UserError("--study: the study has no completed trial to finalize; run more trials")


def study_verdict(mlflow_client: Any, parent: Any, rows: list[TrialRow]) -> Any:
    """The study's verdict (dualtune/verdict.py) from what MLflow holds: its baseline runs, its
    confirmation runs and its trials' scores; None for a study recorded before studies had
    one (no baseline, no confirmation, no winner tag)."""
    from dualtune.verdict import decide

    found = layout.executions(mlflow_client, parent)
    trust = layout.study_trust(parent)
    if not found and trust.winner is None:
        return None
    _, minimize = metric_of(parent)
    final = {e.execution_id: e.final if usable(e.status, e.final) else None for e in found}
    baseline = [final[e.execution_id] for e in found if e.role == layout.ROLE_BASELINE]
    confirmed: dict[str, list[float | None]] = {}
    for e in found:
        if e.role == layout.ROLE_CONFIRMATION and e.trial_id is not None:
            confirmed.setdefault(e.trial_id, []).append(final[e.execution_id])
    scores = {r.trial_id: r.final if usable(r.status, r.final) else None for r in rows}
    goal = "minimize" if minimize else "maximize"
    return decide(baseline, scores, confirmed or None, goal)


def param_text(text: str) -> str:
    """A recorded parameter (MLflow keeps text) for a table: numbers as display.number writes
    them, integers and the rest as they are."""
    try:
        int(text)
        return text
    except ValueError:
        pass
    try:
        return number(float(text))
    except ValueError:
        return text


def print_trials(tracking_uri: str | None, workdir: Path, study: str | None) -> int:
    name = study or study_record.find(workdir, None).name
    _, mlflow_client = store_client(tracking_uri, "--study", name)
    parent, rows = study_runs(mlflow_client, name)
    metric, _ = metric_of(parent)
    print(f"study {name} ({backend_of(parent)}): {counted(len(rows), 'trial')}, best first")
    print(f"{'trial':>6} {'status':<10} {metric:>12} {'epochs':>6}  parameters")
    for row in rows:
        params = " ".join(f"{k}={param_text(v)}" for k, v in sorted(row.params.items()))
        print(f"{row.trial_id:>6} {row.status:<10} {sig(row.final):>12} {row.epochs:>6}  {params}")
        if row.status == "FAILED" and row.reason:
            print(f"{'':>6} reason: {row.reason.splitlines()[-1][:160]}")
    verdict = study_verdict(mlflow_client, parent, rows)
    if verdict is None:
        print("no baseline or confirmation recorded (a study from before they ran): no verdict")
    else:
        print(verdict.best_line)
        print(f"verdict: {verdict.words}")
    return 0
