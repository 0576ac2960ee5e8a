"""Which finalize process is gone (dualtune/finalize.py): the next finalize ends the runs such a
process left RUNNING, and never a run of a live process or another host's."""

from __future__ import annotations

import socket
import subprocess
import sys

from dualtune.finalize import process_gone, this_process


def test_this_process_is_not_gone():
    me = this_process()
    host, pid, start = me.split(":")
    assert host == socket.gethostname() and start  # Linux: /proc gives the start time
    assert not process_gone(me)


def test_an_ended_process_is_gone_and_a_reused_pid_too():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    assert process_gone(f"{socket.gethostname()}:{child.pid}:1")
    host, pid, start = this_process().split(":")
    assert process_gone(f"{host}:{pid}:{int(start) + 1}")  # same pid, another start: reused


def test_a_zombie_is_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(600):  # at most 60 s for it to exit (not reaped: a zombie)
            with open(f"/proc/{child.pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            subprocess.run(["sleep", "0.1"], check=True)
        token = f"{socket.gethostname()}:{child.pid}:"
        assert process_gone(token)
    finally:
        child.wait(timeout=60)


def test_another_hosts_process_or_an_unreadable_token_is_never_gone():
    assert not process_gone("some-other-host:1:1")
    assert not process_gone(f"{socket.gethostname()}:not-a-pid:1")
    assert not process_gone("")
