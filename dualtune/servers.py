"""A server dualtune starts and serves through (`mlflow ui`, `mlflow models serve`): waiting on
it while Ctrl-C, SIGTERM and SIGHUP are heard, and stopping its whole process group.

Why the wait polls: a signal sent to the process is delivered by the kernel to any one of its
threads. dualtune's CLI has several (the stderr filter, MLflow's artifact pool), and when the
signal lands on one of them, Python only sets a flag for the main thread to act on at its next
bytecode; a main thread blocked in `Popen.wait()` (waitpid) is never woken, so the handler never
runs and the server is never stopped. Short sleeps bound that delay instead.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_S = 0.2  # how late a stop signal that another thread received can be acted on


class Stopped(Exception):
    """Ctrl-C, SIGTERM or SIGHUP arrived: unwind, so the server is stopped on the way out."""


@contextmanager
def stop_signals(
    signals: tuple[signal.Signals, ...] = STOP_SIGNALS,
    exception: type[BaseException] = Stopped,
) -> Iterator[list[int]]:
    """Inside, the first of `signals` raises `exception` (its text: the signal's name); later
    ones are ignored, so a second signal cannot cut a cleanup short. A signal ignored before
    (SIGHUP under nohup) stays ignored. The previous handlers come back after. Yields the signal
    numbers caught. Off the main thread (where no handler can be set) it changes nothing."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def stop(signum: int, _frame: object) -> None:
        if not caught:
            caught.append(signum)
            raise exception(signal.Signals(signum).name)

    previous = {
        s: signal.signal(s, stop) for s in signals if signal.getsignal(s) is not signal.SIG_IGN
    }
    try:
        yield caught
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


def wait_exit(proc: subprocess.Popen) -> int:
    """proc's exit status, waiting in short sleeps so that a signal handler always gets to run."""
    while proc.poll() is None:
        time.sleep(POLL_S)
    return proc.returncode


def stop_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM to proc's process group, a bounded wait for every member to go, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while _group_alive(proc) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _group_alive(proc):
            break
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) did not exit after SIGKILL", proc.args[0], proc.pid)


def _group_alive(proc: subprocess.Popen) -> bool:
    proc.poll()  # reap the leader, so it does not count as a member
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return proc.returncode is None or _live_members(proc.pid)


def _live_members(pgid: int) -> bool:
    """Any process of the group that is not a zombie (an orphan's zombie is init's to reap)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return not Path("/proc/self/stat").exists()  # no /proc (macOS): trust killpg
