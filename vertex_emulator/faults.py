"""Injected faults: the next N requests matching a method and a path regex answer 429/503/....

For a CLI-started emulator, DUALTUNE_EMULATOR_FAULTS holds them, either as JSON
('[{"status": 503, "count": 2, "method": "POST", "pattern": "hyperparameterTuningJobs"}]')
or compactly as STATUS:COUNT:METHOD:PATTERN entries separated by ';' (METHOD '*' = any),
e.g. '503:2:POST:hyperparameterTuningJobs;429:1:*:customJobs/\\d+$'.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass

ENV_VAR = "DUALTUNE_EMULATOR_FAULTS"


@dataclass
class Fault:
    status: int
    remaining: int
    pattern: re.Pattern
    method: str | None  # None: any method


class Faults:
    """Thread-safe list of pending faults; each matching request uses up one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def inject(self, status: int, count: int = 1, pattern: str = "", method: str | None = None):
        if not 400 <= status <= 599 or count < 1:
            raise ValueError(
                f"a fault needs a 4xx/5xx status and a count >= 1, not {status}x{count}"
            )
        method = None if method in (None, "", "*") else method.upper()
        with self._lock:
            self._faults.append(Fault(status, count, re.compile(pattern), method))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> int | None:
        """The status to answer with instead of serving, or None."""
        with self._lock:
            for fault in self._faults:
                if fault.method not in (None, method) or not fault.pattern.search(path):
                    continue
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault.status
        return None


def parse_faults(text: str) -> list[dict]:
    """DUALTUNE_EMULATOR_FAULTS -> keyword arguments for Faults.inject."""
    text = text.strip()
    if not text:
        return []
    if text[0] in "[{":
        data = json.loads(text)
        entries = data if isinstance(data, list) else [data]
        return [
            {
                "status": int(e["status"]),
                "count": int(e.get("count", 1)),
                "pattern": str(e.get("pattern", "")),
                "method": e.get("method"),
            }
            for e in entries
        ]
    parsed = []
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        parts = entry.split(":", 3)
        status, count, method, pattern = parts + ["", "1", "*", ""][len(parts) :]
        parsed.append(
            {"status": int(status), "count": int(count or 1), "pattern": pattern, "method": method}
        )
    return parsed
