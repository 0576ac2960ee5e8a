"""Fan trial events out to recorders on a thread of their own, so recording never slows a trial.

A recorder that raises (an MLflow server down for a while) keeps its event and retries it with
backoff; later events wait behind it in order, so nothing is lost, reordered or duplicated. The
other recorders carry on meanwhile: each recorder has its own queue. A recorder with a `flush()`
method (the MLflow recorder, which batches metric points) has it called whenever its queue runs
empty and before the lane ends, with the same retries: a burst is written in a few calls, a lone
event at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from backends.base import Event

log = logging.getLogger(__name__)

_DONE = object()
QUIET_S = 60.0  # at most one "unavailable" line a minute per recorder


class Recorder(Protocol):
    def handle(self, event: Event) -> None: ...


class _Lane(threading.Thread):
    """One recorder's ordered queue and retry loop."""

    def __init__(self, recorder: Recorder, max_backoff_s: float) -> None:
        super().__init__(name=f"recorder-{type(recorder).__name__}", daemon=True)
        self.recorder = recorder
        self.queue: queue.Queue = queue.Queue()
        self.max_backoff_s = max_backoff_s
        self.failing_since: float | None = None
        self.warned_at: float | None = None  # when the last "unavailable" line was written
        self.told = False  # that line was written for the current outage
        self.stop_event = threading.Event()

    def run(self) -> None:
        flush = getattr(self.recorder, "flush", None)
        while True:
            event = self.queue.get()
            if event is _DONE:
                if flush is not None:
                    self._deliver(flush)
                return
            self._deliver(lambda: self.recorder.handle(event))  # noqa: B023 - called at once
            if flush is not None and self.queue.empty():
                self._deliver(flush)

    def _deliver(self, action: Callable[[], None]) -> None:
        """Run `action` (hand over an event, or flush) until it succeeds or the lane is told to
        stop."""
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - any outage: keep the event, retry
                self._failed(exc)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            if self.failing_since is not None:
                if self.told:
                    log.warning("%s is back; replaying kept events", type(self.recorder).__name__)
                    self.told = False
                self.failing_since = None
            return

    def _failed(self, exc: Exception) -> None:
        """Say that the recorder is failing once per outage, and once per QUIET_S at most: a
        store that is full or flaps fails and recovers every few writes, and a line for each
        (933 of them in a minute, once) drowns the study's own lines. The rest go to DEBUG."""
        now = time.monotonic()
        name = type(self.recorder).__name__
        if self.failing_since is None:
            self.failing_since = now
            if self.warned_at is None or now - self.warned_at > QUIET_S:
                log.warning(
                    "%s unavailable (%s); events are kept and replayed when it is back",
                    name,
                    _short(exc),
                )
                self.warned_at, self.told = now, True
                return
        log.debug("%s still unavailable (%s); retrying", name, _short(exc))


class Dispatcher:
    """The sink a backend writes to: every event goes to every recorder, in order."""

    def __init__(self, recorders: list[Recorder], max_backoff_s: float = 10.0) -> None:
        self.lanes = [_Lane(r, max_backoff_s) for r in recorders]
        for lane in self.lanes:
            lane.start()

    def __call__(self, event: Event) -> None:
        for lane in self.lanes:
            lane.queue.put(event)

    def pending(self) -> int:
        return sum(lane.queue.qsize() for lane in self.lanes)

    def close(self, timeout_s: float = 600.0) -> bool:
        """Wait (bounded) for every recorder to catch up; True when all events were delivered."""
        for lane in self.lanes:
            lane.queue.put(_DONE)
        deadline = time.monotonic() + timeout_s
        for lane in self.lanes:
            lane.join(max(0.0, deadline - time.monotonic()))
        late = [lane for lane in self.lanes if lane.is_alive()]
        for lane in late:
            lane.stop_event.set()
            log.error(
                "%s did not catch up within %.0f s; %d events were not recorded yet: "
                "`dualtune tune --resume --study NAME` replays them from the study record",
                type(lane.recorder).__name__,
                timeout_s,
                lane.queue.qsize(),
            )
        return not late


def _short(exc: BaseException) -> str:
    # SQLAlchemy may lead with a note on how the error arose; the error itself comes next.
    text = [ln for ln in str(exc).strip().splitlines() if not ln.startswith("(raised as a")]
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
