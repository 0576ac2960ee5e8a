"""Trial server: import the heavy modules once, then fork one fresh process per trial.

Run as a script by path (stdlib only), so it works under any interpreter given with --python:

    python launcher.py --preload=trainer.task [--warm-up=trainer.task]
    python launcher.py --single

Nothing of a trial's argv is ever on this process's command line (which every local user can
read in `ps`): the argv may carry secrets (`-- --db_password=...`); it comes on stdin.

It imports each --preload module (a module that fails to import is skipped: the trial will report
the real error). With --warm-up, the first line on stdin is a JSON list, the fixed args; if the
--warm-up module defines `warm_up`, it calls warm_up(fixed args): the trial's argv minus its
parameters, so the trainer can read its data now (optional; an error in it
is ignored, the trial will meet it again and report it). It must not start TensorFlow's runtime
(run an op, list devices): the trials are forked from this process, and each must set up its own
runtime, on the GPU its environment names.

Then, for each JSON line on stdin, {"token", "argv", "env", "cwd", "stdout", "stderr"}, it forks
a child that becomes the trial: a new session (its own process group), SIGKILL when this server
dies, the trial's environment, working directory and stdout/stderr files, and sys.argv; it runs
the trial's `python -m module` or `python script` as a fresh interpreter would (runpy) and leaves
with os._exit once its output is flushed. On the original stdout the server answers one JSON line
per event: {"token", "pid"} when a trial's process exists, {"pid", "code"} when it has ended
(code as subprocess.Popen gives it: the exit status, or -N for signal N). EOF on stdin: the server
waits for its running trials, then exits.

--single: one trial started cold (no server): the trial's JSON line on stdin, run in this process
itself (its own session and stdout/stderr files are its parent's doing), exit with its status.
"""

import json
import os
import runpy
import select
import signal
import sys

REAP_S = 0.02  # how often ended trials are looked for while waiting for the next trial


def _preload(names):
    for name in names:
        try:
            __import__(name)
        except BaseException:  # noqa: BLE001 - the trial itself will show the real error
            pass


def _warm_up(module, fixed_args):
    hook = getattr(sys.modules.get(module), "warm_up", None)
    if callable(hook):
        try:
            hook(list(fixed_args))
        except BaseException:  # noqa: BLE001 - the trial itself will show the real error
            pass


def _redirect(path, fd):
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, fd)
    os.close(target)


def _die_with_server():
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run(message):
    os.environ.clear()
    os.environ.update(message["env"])
    os.chdir(message["cwd"])
    _redirect(message["stdout"], 1)
    _redirect(message["stderr"], 2)
    argv = message["argv"][1:]  # drop the interpreter
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path.insert(0, message["cwd"])
        # As in a fresh `python -m`, the module runs as __main__ only (runpy warns otherwise);
        # what it imports (its package, its data cache) stays loaded.
        sys.modules.pop(argv[1], None)
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")


def _trial(message, server_pid, private_fds):
    """In the forked child: become the trial, run it, never return."""

    def prepare():
        os.setsid()
        _die_with_server()
        if os.getppid() != server_pid:  # the server died before the line above
            os._exit(137)
        for fd in private_fds:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _fresh_random_state()
        return message

    _run_to_exit(prepare)


def _single():
    """--single: read the one trial's line from stdin and run it here; never return."""
    _run_to_exit(lambda: json.loads(_read_line(0)))


def _run_to_exit(prepare):
    """Run the trial `prepare()` returns, in this process, and leave with its exit status."""
    code = 1
    try:
        message = prepare()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # a trial reads no input, as under Vertex
        os.close(null)
        code = 0
        _run(message)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):  # sys.exit("message") prints it, as Python does
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - print it as the interpreter would, then exit 1
        import traceback

        traceback.print_exc()
        code = 1
    _fast_exit(code)


def _fresh_random_state():
    """A fresh interpreter seeds numpy's global generator from the OS; a forked one could share
    the server's stream with every other trial. (Python's random module reseeds itself at fork,
    and so does recent numpy; older numpy, under another --python, does not.)"""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _fast_exit(code):
    """Flush what the trial wrote, then leave without the interpreter's teardown: with
    TensorFlow loaded that teardown takes seconds."""
    try:
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    finally:
        os._exit(code)


def _exit_code(status):
    """A wait status as subprocess.Popen reports it (os.waitstatus_to_exitcode is 3.9+)."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _read_line(fd):
    """One line from `fd`, read a byte at a time so that nothing after it is consumed."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line


def serve(answer_fd):
    server_pid = os.getpid()
    answers = os.fdopen(answer_fd, "w", buffering=1)
    children = set()
    pending = b""
    reading = True

    def say(event):
        answers.write(json.dumps(event) + "\n")

    while reading or children:
        ready, _, _ = select.select([0] if reading else [], [], [], REAP_S)
        if ready:
            chunk = os.read(0, 1 << 16)
            reading = bool(chunk)
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                message = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _trial(message, server_pid, (answer_fd,))
                children.add(pid)
                say({"token": message["token"], "pid": pid})
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)
            say({"pid": pid, "code": _exit_code(status)})


def main():
    # Run by path, Python put this file's folder (backends/local) first on sys.path: a trainer's
    # `import process` must not find ours.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    if sys.argv[1:] == ["--single"]:
        _single()
    options = [a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a]
    # The answers go out on a private copy of stdout; fd 1 itself points nowhere, so that a
    # module printing while it is imported cannot garble them.
    answer_fd = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    _preload([value for name, value in options if name == "preload"])
    for name, value in options:
        if name == "warm-up":
            fixed = json.loads(_read_line(0) or b"[]")  # on stdin, not argv: it may hold secrets
            _warm_up(value, fixed)
    serve(answer_fd)
    _fast_exit(0)


if __name__ == "__main__":
    sys.exit(main())
