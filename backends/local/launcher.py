"""Warm trial launcher: import the heavy modules now, run the trial when told.

Run as a script by path (stdlib only), so it works under any interpreter given with --python:

    python launcher.py --preload=trainer.task

It imports each --preload module (a module that fails to import is skipped: the trial will report
the real error), then reads ONE JSON line from stdin: {"argv", "env", "cwd", "stdout", "stderr"}.
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
    preload = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--preload=")]
    _preload(preload)
    line = sys.stdin.readline()
    if not line:
        return 0
    message = json.loads(line)
    sys.stdin.close()
    sys.stdin = open(os.devnull)  # noqa: SIM115 - a trial reads no input, as under Vertex
    _run(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
