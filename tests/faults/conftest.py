"""Filesystems of a fixed size or read-only, for the fault tests: real tmpfs mounts (the tests
run as root, as CI does). A mount that cannot be made fails the test loudly: a skipped fault
test would pass without showing anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def _mount(target: Path, options: str) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs at {target} ({done.stderr.strip()}); these tests need root "
            f"(uid {os.getuid()}) and mount(8): run them where CI does",
            pytrace=False,
        )


def remount(target: Path, options: str) -> None:
    """Change a mount made by `small_fs` (e.g. "remount,ro", or "remount,size=64m")."""
    subprocess.run(["mount", "-o", options, str(target)], check=True, timeout=30)


@pytest.fixture
def small_fs(tmp_path):
    """small_fs(name, size) -> a fresh tmpfs folder of `size` (e.g. "4m"), unmounted after
    the test whatever happens."""
    mounted: list[Path] = []

    def make(name: str, size: str) -> Path:
        target = tmp_path / name
        target.mkdir()
        _mount(target, f"size={size},mode=0755")
        mounted.append(target)
        return target

    yield make
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], timeout=30, check=False)
