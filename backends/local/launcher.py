"""Warm trial launcher: import the heavy modules now, run the trial when told.

Run as a script by path (stdlib only), so it works under any interpreter given with --python:

    python launcher.py --preload=trainer.task [--warm-up=trainer.task --fixed-args=JSON_LIST]

It imports each --preload module (a module that fails to import is skipped: the trial will report
the real error). If the --warm-up module defines `warm_up`, it calls warm_up(fixed args): the
trial's argv minus its parameters, so the trainer can read its data and do its one-time set-up
now (optional; any error in it is ignored, the trial will meet it again and report it). Then it
reads ONE JSON line from stdin: {"argv", "env", "cwd", "stdout", "stderr"}.
It replaces its environment, working directory, stdout/stderr and sys.argv with the trial's and
runs the trial's `python -m module` or `python script` exactly as a fresh interpreter would, in
this same process. EOF on stdin (the orchestrator discarded it) exits quietly.
"""

import json
import os
import runpy
import sys


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


def _run(message):
    os.environ.clear()
    os.environ.update(message["env"])
    os.chdir(message["cwd"])
    sys.stdout.flush()
    sys.stderr.flush()
    _redirect(message["stdout"], 1)
    _redirect(message["stderr"], 2)
    argv = message["argv"][1:]  # drop the interpreter
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path.insert(0, message["cwd"])
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")


def main():
    options = [a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a]
    _preload([value for name, value in options if name == "preload"])
    for name, value in options:
        if name == "warm-up":
            fixed = next((json.loads(v) for n, v in options if n == "fixed-args"), [])
            _warm_up(value, fixed)
    line = sys.stdin.readline()
    if not line:
        return 0
    message = json.loads(line)
    sys.stdin.close()
    sys.stdin = open(os.devnull)  # noqa: SIM115 - a trial reads no input, as under Vertex
    code = 0
    try:
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


def _fast_exit(code):
    """Flush what the trial wrote, then leave without the interpreter's teardown: with
    TensorFlow loaded that teardown takes seconds, and the next trial waits for this slot."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
