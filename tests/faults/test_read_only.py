"""A read-only MLflow store or study folder: `dualtune tune` fails at once with one line and
exit status 2, and creates nothing (before: 104 s of retries, 193 lines, a study folder)."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import FIXTURES, dualtune_argv
from tests.faults.conftest import remount

pytestmark = pytest.mark.slow


def tune(study: str, *flags: str):
    started = time.monotonic()
    done = subprocess.run(
        dualtune_argv(
            "tune", "--space", str(FIXTURES / "toy.yaml"), "--study", study, "--max-trials", "1",
            *flags,
        ),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return done, time.monotonic() - started


def assert_refused(done, took: float, what: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert what in lines[0], lines[0]
    assert took < 30  # an interpreter start, not minutes of retries


def test_read_only_store_is_refused_before_anything_is_created(isolated, small_fs):
    store = small_fs("store", "64m")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    done, _ = tune("first", "--tracking-uri", uri)  # a real store with a study in it
    assert done.returncode == 0, done.stderr
    remount(store, "remount,ro")
    done, took = tune("second", "--tracking-uri", uri)
    assert_refused(done, took, f"--tracking-uri: the MLflow store {store / 'mlflow.db'} cannot")
    assert "make it writable or give --tracking-uri" in done.stderr
    assert sorted(p.name for p in (isolated / "studies").iterdir()) == ["first"]


def test_read_only_empty_store_folder_is_refused(isolated, small_fs):
    store = small_fs("empty", "4m")
    remount(store, "remount,ro")
    done, took = tune("s", "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}")
    assert_refused(done, took, f"({store} is read-only)")
    assert not (isolated / "studies").exists()


def test_read_only_studies_folder_is_refused(isolated, small_fs):
    workdir = small_fs("studies", "4m")
    remount(workdir, "remount,ro")
    done, took = tune("s", "--workdir", str(workdir / "mine"))
    assert_refused(done, took, f"--workdir: {workdir} is read-only")
    assert not (isolated / "mlruns").exists()  # not even the store was made
