"""Reading the metric file cloudml-hypertune writes, the one measurement channel of a trial.

cloudml-hypertune rewrites the whole file on every report (one JSON object a line, every value a
string except timestamp, at most the last 100 reports), so a reader re-reads it and keeps what it
has not seen yet. A torn read (the writer mid-rewrite) is harmless: the next poll sees it whole.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Report:
    step: int
    value: float
    timestamp: float


def read_reports(path: Path, tag: str) -> list[Report]:
    """Every parseable report of `tag` in the file, in file order; [] if it does not exist yet."""
    try:
        text = Path(path).read_text()
    except (FileNotFoundError, IsADirectoryError):
        return []
    reports = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
            value = float(record[tag])
            step = int(float(record.get("global_step") or 0))
        except (ValueError, KeyError, TypeError):
            continue  # a torn line or another metric: skip it
        reports.append(Report(step, value, float(record.get("timestamp") or 0.0)))
    return reports


class MetricTail:
    """Yields each (step, value) of a hypertune file once, in step order of arrival."""

    def __init__(self, path: Path, tag: str) -> None:
        self.path = Path(path)
        self.tag = tag
        self.seen: dict[int, float] = {}

    def poll(self) -> list[Report]:
        fresh = []
        for report in read_reports(self.path, self.tag):
            if report.step not in self.seen:
                self.seen[report.step] = report.value
                fresh.append(report)
        return fresh


def select_final(values: list[float], minimize: bool, selection: str = "best") -> float | None:
    """The trial's final measurement: the best (Vertex's default) or the last finite value."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    if selection == "last":
        return finite[-1]
    return min(finite) if minimize else max(finite)
