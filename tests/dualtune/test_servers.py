"""Waiting on a server dualtune started, with stop signals heard whichever thread receives them.

The kernel hands a process-directed signal to any one of the process's threads. When it lands
on a thread other than the main one, Python only flags it for the main thread: a main thread
blocked in waitpid (`Popen.wait()`) never runs the handler, and the server is never stopped
(seen as `dualtune deploy` ignoring SIGTERM under load). pthread_kill aims the signal at a
chosen thread, so these tests hit that case every time instead of by chance.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

from dualtune.servers import Stopped, stop_group, stop_signals, wait_exit
from trialkit.errors import Interrupted

WATCHDOG_S = 30.0  # kills the child if the signal is lost, so a failure cannot hang the suite


def _server() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )


def _in_another_thread(*signals: signal.Signals) -> threading.Thread:
    """A thread that sends itself each signal: the main thread does not receive them."""

    def send() -> None:
        for sig in signals:
            signal.pthread_kill(threading.get_ident(), sig)

    thread = threading.Thread(target=send, name="not-main")
    thread.start()
    return thread


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name
)
def test_a_stop_signal_another_thread_receives_ends_the_wait(sig):
    server = _server()
    watchdog = threading.Timer(WATCHDOG_S, server.kill)
    watchdog.start()
    try:
        with stop_signals(), pytest.raises(Stopped, match=sig.name):
            threading.Timer(0.5, lambda: _in_another_thread(sig)).start()
            wait_exit(server)
        assert server.poll() is None, "the wait ended because the watchdog killed the server"
    finally:
        watchdog.cancel()
        stop_group(server)
    assert server.returncode == -signal.SIGTERM  # stopped by stop_group, not by the watchdog


def test_a_second_signal_is_ignored_and_the_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    server = _server()
    watchdog = threading.Timer(WATCHDOG_S, server.kill)
    watchdog.start()
    try:
        with stop_signals():
            with pytest.raises(Stopped, match="SIGTERM"):
                threading.Timer(0.5, lambda: _in_another_thread(signal.SIGTERM)).start()
                wait_exit(server)
            _in_another_thread(signal.SIGHUP, signal.SIGINT).join()
            stop_group(server)  # the cleanup a second signal must not cut short
    finally:
        watchdog.cancel()
        if server.poll() is None:
            server.kill()
    assert server.returncode == -signal.SIGTERM
    assert {s: signal.getsignal(s) for s in before} == before


def test_wait_exit_returns_the_status_of_a_server_that_ends_by_itself():
    done = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with stop_signals():
        assert wait_exit(done) == 3


def test_a_signal_ignored_before_stays_ignored():
    """Under nohup SIGHUP is ignored: neither a served model nor a study may stop on it."""
    from dualtune.cli import _signals_as_ctrl_c

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert callable(signal.getsignal(signal.SIGTERM))
        with _signals_as_ctrl_c() as caught:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            signal.pthread_kill(threading.get_ident(), signal.SIGHUP)  # ignored: nothing raised
            with pytest.raises(Interrupted, match="SIGTERM"):
                signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
                for _ in range(50):  # the handler runs at the next bytecode; bounded anyway
                    pass
        assert caught == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
