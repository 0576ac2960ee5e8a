"""Running one worker-pool replica as a local process, the way Vertex runs its container.

pythonPackageSpec: the packages are fetched from the storage emulator, extracted, their roots put
on PYTHONPATH, then `python -m module args...` (the emulator's interpreter; requirements must
already be installed). containerSpec: command + args run as argv, no image, no shell unless the
command is one. The AIP_* directories are local paths (see storage.gs_to_local).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from trialkit.log_tail import read_tail
from vertex_emulator.storage import StorageEmulator, gs_to_local

STDERR_TAIL_CHARS = 2000
PID_FILE = "replica.pid"  # "<pid> <start time>": a restarted emulator stops what it finds there
PR_SET_PDEATHSIG = 1
# A package a container command installs from Vertex's Cloud Storage FUSE mount (/gcs/B/name).
_FUSE_PACKAGE = re.compile(r"/gcs/([a-z0-9][-_.a-z0-9]*)/(\S+?\.(?:tar\.gz|whl|zip))(?=\s|$)")
# Stands in for pip and pip3 in container commands: never change the emulator's environment.
_PIP_SHIM = """#!/bin/sh
echo "vertex emulator: not running 'pip $*': requirements must already be installed" >&2
exit 0
"""


class LaunchError(Exception):
    """The replica could not be started (package missing, unsupported spec)."""


@dataclass(frozen=True)
class Runtime:
    """What running jobs need from their emulator."""

    workdir: Path
    python: str
    storage: StorageEmulator
    project: str
    location: str
    grace_s: float = 5.0  # SIGTERM -> SIGKILL
    poll_s: float = 0.1  # how often a supervisor looks at its processes and metric files
    seed: int = 0  # mixed with each job's display name to seed its suggestions
    bayesian: str = "auto"  # ALGORITHM_UNSPECIFIED's designer: auto | vizier | keras_tuner
    # Set when the emulator stops but keeps its workdir: jobs stop their processes and keep
    # their state, for the next start to carry them on (recovery.py).
    halting: threading.Event = field(default_factory=threading.Event, compare=False)

    def local(self, uri: str) -> Path:
        return gs_to_local(uri, self.workdir)


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


@dataclass(frozen=True)
class TrialContext:
    trial_id: str
    flags: tuple[str, ...]  # --name=value, appended to the args
    metric_file: Path


@dataclass
class Outputs:
    """A replica's AIP_* directories: gs:// URIs (what Vertex would say) and local paths."""

    base_uri: str | None
    dirs: dict[str, Path] = field(default_factory=dict)


def output_dirs(rt: Runtime, base_uri: str, trial_id: str | None) -> Outputs:
    base = base_uri.rstrip("/") + (f"/{trial_id}" if trial_id else "")
    names = {
        "AIP_MODEL_DIR": "model",
        "AIP_CHECKPOINT_DIR": "checkpoints",
        "AIP_TENSORBOARD_LOG_DIR": "logs",
    }
    outputs = Outputs(base)
    for var, sub in names.items():
        path = rt.local(f"{base}/{sub}")
        path.mkdir(parents=True, exist_ok=True)
        outputs.dirs[var] = path
    return outputs


def fetch_packages(rt: Runtime, uris: list[str], dest: Path) -> list[Path]:
    """Download and extract each package; returns the directories to put on PYTHONPATH."""
    roots = []
    for index, uri in enumerate(uris):
        target = dest / f"pkg{index}"
        archive = dest / f"pkg{index}.archive"
        if not target.exists():
            rt.storage.download(uri, archive)
            _extract(archive, uri, target)
        entries = [p for p in target.iterdir() if not p.name.startswith(".")]
        sdist_root = len(entries) == 1 and entries[0].is_dir() and uri.endswith((".tar.gz", ".tgz"))
        roots.append(entries[0] if sdist_root else target)
    return roots


def fuse_packages(pool) -> list[str]:
    """gs:// URIs of the archives a container command installs from /gcs/ (from_local_script
    with a non-prebuilt image emits `sh -c "pip install ... && pip3 install --user /gcs/..."`).
    """
    text = " ".join([*pool.container_spec.command, *pool.container_spec.args])
    return [f"gs://{bucket}/{name}" for bucket, name in _FUSE_PACKAGE.findall(text)]


def _pip_shims(rt: Runtime) -> Path:
    shims = rt.workdir / "shims"
    shims.mkdir(parents=True, exist_ok=True)
    for name in ("pip", "pip3"):
        path = shims / name
        if not path.exists():
            path.write_text(_PIP_SHIM)
            path.chmod(0o755)
    return shims


def _extract(archive: Path, uri: str, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    try:
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                tar.extractall(partial, filter="data")
        elif zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(partial)
        else:
            raise LaunchError(f"package {uri!r} is neither a tar archive nor a wheel/zip")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as err:
        raise LaunchError(f"package {uri!r} could not be extracted: {err}") from err
    partial.rename(target)


def plan(
    rt: Runtime,
    pool,
    cwd: Path,
    outputs: Outputs | None,
    env: dict[str, str],
    packages: list[Path],
    trial: TrialContext | None = None,
) -> Launch:
    """The argv, environment and directory of worker pool `pool` (a WorkerPoolSpec proto).

    `env` adds to the emulator's variables; the pool's own env entries override both.
    """
    flags = list(trial.flags) if trial else []
    which = pool.WhichOneof("task")
    if which == "python_package_spec":
        spec = pool.python_package_spec
        if not spec.python_module:
            raise LaunchError("python_package_spec.python_module is required")
        argv = [rt.python, "-m", spec.python_module, *spec.args, *flags]
        spec_env = spec.env
    elif which == "container_spec":
        spec = pool.container_spec
        if not spec.command:
            raise LaunchError(
                f"container_spec of {spec.image_uri!r} has no command: the emulator runs no "
                "images, so it cannot run the image's entrypoint"
            )
        argv = [*spec.command, *spec.args, *flags]
        spec_env = spec.env
    else:
        raise LaunchError("worker pool spec has neither python_package_spec nor container_spec")
    full_env = _environment(rt, env, packages, outputs, trial)
    if which == "container_spec":
        full_env["PATH"] = os.pathsep.join([str(_pip_shims(rt)), full_env["PATH"]])
    full_env.update({var.name: _through_fuse(rt, var.value) for var in spec_env})
    return Launch(argv, full_env, cwd)


def _through_fuse(rt: Runtime, value: str) -> str:
    """An env value naming /gcs/BUCKET/PATH (Vertex's Cloud Storage FUSE mount) as the local
    folder that stands for it, whose files are copied up to gs:// when the job ends."""
    if not value.startswith("/gcs/"):
        return value
    try:
        return str(rt.local("gs://" + value[len("/gcs/") :]))
    except ValueError as err:
        raise LaunchError(f"environment value {value!r}: {err}") from None


def _environment(
    rt: Runtime,
    env: dict[str, str],
    packages: list[Path],
    outputs: Outputs | None,
    trial: TrialContext | None,
) -> dict[str, str]:
    full = dict(os.environ)
    # `python3` in a container command (sh -c "... python3 -m ...") means the emulator's one.
    full["PATH"] = os.pathsep.join([str(Path(rt.python).parent), full.get("PATH", "")])
    pythonpath = [str(p) for p in packages] + [p for p in [full.get("PYTHONPATH")] if p]
    if pythonpath:
        full["PYTHONPATH"] = os.pathsep.join(pythonpath)
    full["STORAGE_EMULATOR_HOST"] = rt.storage.url
    full["CLOUD_ML_PROJECT_ID"] = rt.project
    full["CLOUD_ML_REGION"] = rt.location
    if outputs is not None:
        full.update({var: str(path) + os.sep for var, path in outputs.dirs.items()})
    task = {"type": "workerpool0", "index": 0}
    if trial is not None:
        full["CLOUD_ML_TRIAL_ID"] = trial.trial_id
        full["CLOUD_ML_HP_METRIC_FILE"] = str(trial.metric_file)
        task["trial"] = trial.trial_id
    cluster = {"workerpool0": ["127.0.0.1:2222"]}
    full["CLUSTER_SPEC"] = json.dumps({"cluster": cluster, "environment": "cloud", "task": task})
    tf_task = {**task, "type": "chief"}
    full["TF_CONFIG"] = json.dumps(
        {"cluster": {"chief": cluster["workerpool0"]}, "environment": "cloud", "task": tf_task}
    )
    full.update(env)
    return full


class WorkerProcess:
    """One replica's process (in its own process group), its logs, and how to stop it."""

    def __init__(self, launch: Launch) -> None:
        launch.cwd.mkdir(parents=True, exist_ok=True)
        self.stdout_path = launch.cwd / "stdout.log"
        self.stderr_path = launch.cwd / "stderr.log"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                launch.argv,
                cwd=launch.cwd,
                env=launch.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # killpg reaches `sh -c` children too
                preexec_fn=die_with_parent,
            )
        record_pid(launch.cwd / PID_FILE, self.proc.pid)
        self.kill_at: float | None = None
        self.swept = False

    def poll(self) -> int | None:
        """The exit status once it has ended; escalates a requested stop to SIGKILL after grace."""
        code = self.proc.poll()
        if code is None and self.kill_at is not None and time.monotonic() >= self.kill_at:
            self._signal(signal.SIGKILL)
            code = self.proc.poll()
        if code is not None and not self.swept:
            self.swept = True
            self._signal(signal.SIGKILL)  # whatever the replica left behind in its group
        return code

    def request_stop(self, grace_s: float) -> None:
        """SIGTERM now; poll() sends SIGKILL once `grace_s` has passed."""
        if self.kill_at is None and self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            self.kill_at = time.monotonic() + grace_s

    def stop(self, grace_s: float) -> int:
        """Stop it and wait: SIGTERM, then SIGKILL after the grace period."""
        self.request_stop(grace_s)
        try:
            code = self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            code = None
        self._signal(signal.SIGKILL)
        return code if code is not None else self.proc.wait(timeout=10)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stderr_tail(self) -> str:
        """The end of its stderr (at most STDERR_TAIL_CHARS), read without reading the log."""
        return read_tail(self.stderr_path, 4 * STDERR_TAIL_CHARS)[-STDERR_TAIL_CHARS:].strip()


def _prctl():
    """libc's prctl, looked up here in the parent: a forked child only calls it."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _prctl()


def die_with_parent() -> None:
    """In a child, before exec: SIGKILL when the emulator's thread that started it dies (a kill
    -9 of the emulator included), so no replica trains on as an orphan (Linux; elsewhere the
    restart's sweep, stop_leftover, is the only guard)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22): with the pid, it
    names one process, never a later one that reuses the pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def record_pid(path: Path, pid: int) -> None:
    path.write_text(f"{pid} {_start_time(pid) or '?'}\n")


def stop_leftover(directory: Path) -> bool:
    """Kill the process group a previous emulator started in `directory`, if it still runs
    (its replica's `sh -c` children outlive the replica's death signal); True if one did."""
    try:
        pid_text, started = (directory / PID_FILE).read_text().split()
    except (OSError, ValueError):
        return False
    pid = int(pid_text)
    now = _start_time(pid)
    if now is not None and now != started:
        return False  # the pid names another process now; our group ended with ours
    # The leader is ours, or gone: a process group's id is never reused while the group has a
    # member, so group `pid` is what is left of ours, if anything.
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True
