"""One trial as one operating-system process, watched through its hypertune file.

The trial command is an argv list (never a shell string). stdout and stderr go to files in the
trial's directory so a crash keeps its evidence; the tail of stderr becomes the failure reason.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from trialkit.hypertune_file import MetricTail, Report
from trialkit.log_tail import stderr_tail

log = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("launcher.py")


@dataclass(frozen=True)
class TrialCommand:
    """What to run for one trial: argv, the environment it adds, and where its files go."""

    argv: tuple[str, ...]
    env: dict[str, str]
    directory: Path
    metric_file: Path


def oom_kill_count() -> int | None:
    """How many processes the kernel's OOM killer has ended in this process's memory cgroup
    (cgroup v2 memory.events, v1 memory.oom_control: `oom_kill N`); None where unreadable."""
    for path in _oom_counter_files():
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def _oom_counter_files() -> list[Path]:
    """Candidates, own cgroup first; a container often sees its own cgroup as the root."""
    root = Path("/sys/fs/cgroup")
    try:
        entries = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        entries = []
    files = []
    for entry in entries:
        _, controllers, rel = (entry.split(":", 2) + ["", ""])[:3]
        rel = rel.strip().lstrip("/")
        if controllers == "":
            files += [root / rel / "memory.events", root / "unified" / rel / "memory.events"]
        elif "memory" in controllers.split(","):
            files += [root / "memory" / rel / "memory.oom_control"]
    return [*files, root / "memory.events", root / "memory" / "memory.oom_control"]


def kernel_says_oom_killed(pid: int) -> bool:
    """Whether the kernel log (where readable) records the OOM killer ending process `pid`."""
    try:
        log_text = subprocess.run(
            ["dmesg"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    marks = (f"Killed process {pid} ", f",pid={pid},")
    return any(
        ("oom" in line.lower() or "out of memory" in line.lower()) and any(m in line for m in marks)
        for line in log_text.splitlines()
    )


class TrialServer:
    """A Python process that did the trainer's heavy imports once and forks each trial from them.

    Importing TensorFlow takes seconds of CPU; a trial forked from a process that already did it
    starts at once and costs none of it. Each trial is still its own process (its own pid,
    session, memory), with the exact argv, environment and working directory a cold start would
    get (see launcher.py). One server serves every slot of a study: the GPU a trial may use is
    in its own environment, and the server never starts TensorFlow's runtime itself.
    """

    def __init__(
        self,
        python: str,
        preload: tuple[str, ...],
        base_env: dict[str, str],
        warm_up: str | None = None,
        fixed_args: tuple[str, ...] = (),
    ) -> None:
        """`warm_up`: the trainer module whose optional warm_up(fixed_args) the server calls
        once its imports are done (see launcher.py); `fixed_args`: the argv every trial of the
        study gets before its parameters."""
        argv = [python, str(LAUNCHER), *[f"--preload={m}" for m in preload]]
        if warm_up:
            argv += [f"--warm-up={warm_up}"]
        self.proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=base_env,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self._changed = threading.Condition()
        self._pids: dict[int, int] = {}  # token -> pid
        self._codes: dict[int, int] = {}  # pid -> exit code, once ended
        self._tokens = itertools.count()
        self._closed = False  # the server's answers ended: it is gone
        self._closing = False  # close() was called
        if warm_up:  # on stdin, never argv: `ps` shows argv to every local user
            self._send((json.dumps(list(fixed_args)) + "\n").encode())
        self._reader = threading.Thread(target=self._read_answers, name="trial-server", daemon=True)
        self._reader.start()

    def _send(self, data: bytes) -> bool:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return False
        return True

    def _read_answers(self) -> None:
        try:
            for line in self.proc.stdout:
                try:
                    answer = json.loads(line)
                except ValueError:
                    continue
                with self._changed:
                    if "token" in answer:
                        self._pids[answer["token"]] = answer["pid"]
                        # A pid the system gave again: an earlier trial's end is not this one's.
                        self._codes.pop(answer["pid"], None)
                    else:
                        self._codes[answer["pid"]] = answer["code"]
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()
            self.proc.stdout.close()

    def alive(self) -> bool:
        return not self._closed and self.proc.poll() is None

    def start(
        self, command: TrialCommand, env: dict[str, str], timeout_s: float = 300.0
    ) -> ServedProcess | None:
        """Fork the trial; None if the server cannot (then start it cold). The first trial may
        wait here while the server finishes its imports."""
        token = next(self._tokens)
        if not self._send((json.dumps({"token": token, **_message(command, env)}) + "\n").encode()):
            return None
        with self._changed:
            self._changed.wait_for(lambda: token in self._pids or self._closed, timeout_s)
            pid = self._pids.pop(token, None)
        if pid is None:  # gone, or stuck (in an import, say): no trial waits for it again
            self.close()
            return None
        return ServedProcess(self, pid)

    def exit_code(self, pid: int) -> int | None:
        """How trial `pid` ended; None while it runs. If the server is gone, so are its trials
        (they get SIGKILL when it dies): -9."""
        with self._changed:
            if pid in self._codes:
                return self._codes[pid]
            return -signal.SIGKILL if self._closed else None

    def died(self) -> bool:
        """Whether the server ended by itself (killed, out of memory...), not by close()."""
        return self._closed and not self._closing

    def close(self) -> None:
        """Stop the server: no more trials; running ones are killed with it."""
        self._closing = True
        if self.proc.poll() is None:
            _kill_group(self.proc, signal.SIGKILL)
        self.proc.wait()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self._reader.join(timeout=5)  # it closes the answers pipe at its end


class ServedProcess:
    """A trial forked by a TrialServer, seen through the part of subprocess.Popen we use."""

    def __init__(self, server: TrialServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)


@dataclass
class TrialProcess:
    """A running trial: its process, its metric tail and how it ended."""

    command: TrialCommand
    tag: str
    proc: subprocess.Popen | ServedProcess = field(init=False)
    tail: MetricTail = field(init=False)
    started: float = field(default_factory=time.monotonic)
    last_progress: float = field(default_factory=time.monotonic)
    stop_requested: str = ""
    oom_kills_at_start: int | None = field(default_factory=oom_kill_count)

    @classmethod
    def start(
        cls,
        command: TrialCommand,
        tag: str,
        base_env: dict[str, str],
        server: TrialServer | None = None,
    ) -> TrialProcess:
        """Fork the trial from `server` when there is one (see TrialServer), else spawn it."""
        self = cls(command, tag)
        command.directory.mkdir(parents=True, exist_ok=True)
        self.tail = MetricTail(command.metric_file, tag)
        env = {**base_env, **command.env}
        served = server.start(command, env) if server is not None and server.alive() else None
        if server is not None and served is None:
            log.warning("trial server unavailable; trial %s starts cold", command.directory.name)
        self.proc = served or _spawn(command, env)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll_reports(self) -> list[Report]:
        fresh = self.tail.poll()
        if fresh:
            self.last_progress = time.monotonic()
        return fresh

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def stop(self, why: str, grace_s: float = 10.0) -> None:
        """Ask the trial to stop (SIGTERM: the trainer ends after the current batch)."""
        if not self.stop_requested:
            self.stop_requested = why
            self.stop_deadline = time.monotonic() + grace_s
            _kill_group(self.proc, signal.SIGTERM)
        elif time.monotonic() > self.stop_deadline:
            _kill_group(self.proc, signal.SIGKILL)

    def kill(self) -> None:
        _kill_group(self.proc, signal.SIGKILL)
        self.proc.wait()

    def failure_reason(self) -> str:
        """The trial's last meaningful stderr lines, after why its server died if it did."""
        tail = stderr_tail(self.command.directory / "stderr.log")
        if isinstance(self.proc, ServedProcess) and self.proc.server.died():
            return "the trial server died, and its trials with it" + (f"; {tail}" if tail else "")
        return tail

    def oom_evidence(self) -> str:
        """What the system says about an out-of-memory kill of this trial, '' if nothing: the
        kernel log naming its pid, else its memory cgroup's OOM-kill counter having grown while
        it ran. Only a kill the system records is called out of memory."""
        if kernel_says_oom_killed(self.pid):
            return f"the kernel log records the OOM killer ending pid {self.pid}"
        now, before = oom_kill_count(), self.oom_kills_at_start
        if now is not None and before is not None and now > before:
            return f"its memory cgroup counted {now - before} OOM kill(s) while it ran"
        return ""


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the orchestrator dies (kill -9 included), so a resumed
    study never races an orphaned trial over the same checkpoint directory."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: trials may outlive a killed orchestrator


def _open_logs(directory: Path) -> tuple:
    return (open(directory / "stdout.log", "ab"), open(directory / "stderr.log", "ab"))  # noqa: SIM115


def _message(command: TrialCommand, env: dict[str, str]) -> dict:
    """A trial as launcher.py reads it from stdin."""
    return {
        "argv": list(command.argv),
        "env": env,
        "cwd": str(command.directory),
        "stdout": str(command.directory / "stdout.log"),
        "stderr": str(command.directory / "stderr.log"),
    }


def _spawn(command: TrialCommand, env: dict[str, str]) -> subprocess.Popen:
    """A cold trial: `python launcher.py --single` with the trial's argv on its stdin, so that
    no argument of the trial (a secret among them) is on a command line `ps` shows."""
    out, err = _open_logs(command.directory)
    with out, err:
        proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
            [command.argv[0], str(LAUNCHER), "--single"],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            env=env,
            cwd=command.directory,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
    try:
        with proc.stdin:
            proc.stdin.write((json.dumps(_message(command, env)) + "\n").encode())
    except BrokenPipeError:
        pass  # it died at once: its exit status and stderr.log say why
    return proc


def _kill_group(proc: subprocess.Popen | ServedProcess, sig: int) -> None:
    """Signal the trial's whole process group (the trainer may have children)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def preload_modules(module: str | None, script: str | None) -> tuple[str, ...]:
    """What the trial server imports before the first trial: every absolute import in the
    trainer's source, function-level ones included (trainers often import TensorFlow lazily so
    that --help answers fast), then the trainer module itself."""
    import ast
    import importlib.util

    path = script
    if module:
        try:
            spec = importlib.util.find_spec(module)
            path = spec.origin if spec else None
        except (ImportError, ValueError):
            path = None
    names: list[str] = []
    try:
        tree = ast.parse(Path(path).read_text()) if path else None
    except (OSError, SyntaxError, ValueError):
        tree = None
    for node in ast.walk(tree) if tree else ():
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    if module:
        names.append(module)
    return tuple(dict.fromkeys(n for n in names if n != "__future__"))


def trial_command(argv: list[str], directory: Path, trial_id: str) -> TrialCommand:
    """argv plus what Vertex sets for a trial, all under `directory`."""
    metric_file = directory / "hypertune" / "output.metrics"
    env = {
        "CLOUD_ML_TRIAL_ID": trial_id,
        "CLOUD_ML_HP_METRIC_FILE": str(metric_file),
        "AIP_MODEL_DIR": str(directory / "model"),
        "AIP_CHECKPOINT_DIR": str(directory / "checkpoints"),
        "AIP_TENSORBOARD_LOG_DIR": str(directory / "logs"),
    }
    return TrialCommand(tuple(argv), env, directory, metric_file)
