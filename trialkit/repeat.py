"""One Vertex trial run N times (executions_per_trial): the wrapper a tuning job's trial runs.

A HyperparameterTuningJob starts one container per trial, so a trial's executions run inside
it, one after another: `python -m trialkit.repeat --executions=N --tag=val_rmse ... --module=M
-- <tuning args>` (Vertex appends the trial's --name=value flags after them). Execution K runs
`python -m M <args> <seed flag>=<seed K>` (seeds: run_seeds(f"trial/{CLOUD_ML_TRIAL_ID}", N),
as the local backend) with its own CLOUD_ML_HP_METRIC_FILE and its own AIP_* directories
(`<dir>/execution-K/`).

What Vertex sees: the trial's mean curve, written to the real hypertune file in
cloudml-hypertune's format. The mean at an epoch exists once every execution has reached it, so
it is reported while the LAST execution runs, epoch by epoch: progress and Vertex's early
stopping act then (not during the earlier executions, which report nothing to Vertex). Vertex
then picks the trial's final value from that curve by the study's measurement selection
(trialkit.executions.Combined.curve_score: equal to Keras Tuner's score for `last`, never
better than it for `best`). Every execution's curve, their seeds and Keras Tuner's score go to
`executions.json` in the trial's output directory (AIP_MODEL_DIR's parent; a gs:// one through
Vertex's /gcs/ mount).

A failed execution fails the trial: the wrapper stops there and exits with its status. SIGTERM
(early stopping, a cancelled job) goes to the running execution and starts no other.
Imports nothing outside trialkit and the standard library: it ships with the trainer's package.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from trialkit.executions import combine_executions, run_seeds
from trialkit.hypertune_file import read_reports

MODULE = "trialkit.repeat"
POLL_S = 0.2
KEPT_REPORTS = 100  # cloudml-hypertune keeps the last 100 reports in its file
AIP_DIRS = ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR")
DEFAULT_METRIC_FILE = "/tmp/hypertune/output.metrics"  # noqa: S108 - cloudml-hypertune's own
RESULT_FILE = "executions.json"


def wrapper_args(
    executions: int, tag: str, goal: str, selection: str, seed_flag: str | None, module: str
) -> tuple[str, ...]:
    """The wrapper's own arguments, before `--` and the trainer's."""
    args = [f"--executions={executions}", f"--tag={tag}", f"--goal={goal}"]
    args += [f"--selection={selection}", f"--module={module}"]
    return (*args, *([f"--seed-flag={seed_flag}"] if seed_flag else []))


def parse(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(the wrapper's --key=value options, the trainer's argv after `--`)."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    options = {}
    for arg in argv[:split]:
        key, sep, value = arg.partition("=")
        if not key.startswith("--") or not sep:
            raise SystemExit(f"{MODULE}: expected --key=value before --, got {arg!r}")
        options[key[2:]] = value
    missing = {"executions", "tag", "module"} - set(options)
    if missing:
        raise SystemExit(f"{MODULE}: missing {', '.join(sorted('--' + m for m in missing))}")
    return options, argv[split + 1 :]


def execution_env(env: dict[str, str], metric_file: Path, k: int) -> dict[str, str]:
    """Execution K's environment: its own metric file and AIP_* directories."""
    own = dict(env)
    own["CLOUD_ML_HP_METRIC_FILE"] = str(metric_file.parent / f"execution-{k}.metrics")
    for name in AIP_DIRS:
        if env.get(name):
            own[name] = f"{env[name].rstrip('/')}/execution-{k}/"
    return own


def local_path(uri: str) -> Path:
    """A gs:// URI as Vertex mounts it (/gcs/BUCKET/PATH); a local path as it is."""
    if uri.startswith("gs://"):
        return Path("/gcs", uri[len("gs://") :])
    return Path(uri)


class MeanReporter:
    """Writes the trial's mean curve to the real hypertune file, as cloudml-hypertune would."""

    def __init__(self, path: Path, tag: str, trial_id: str) -> None:
        self.path, self.tag, self.trial_id = path, tag, trial_id
        self.lines: list[str] = []
        self.sent: set[int] = set()

    def report(self, step: int, value: float) -> None:
        if step in self.sent:
            return
        self.sent.add(step)
        body = {
            "timestamp": time.time(),
            "trial": self.trial_id,
            self.tag: str(float(value)),
            "global_step": str(int(step)),
            "checkpoint_path": "",
        }
        self.lines = [*self.lines, json.dumps(body, sort_keys=True)][-KEPT_REPORTS:]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(line + "\n" for line in self.lines))


class Repeat:
    """One trial's executions, run one after another (see the module docstring)."""

    def __init__(self, options: dict[str, str], trainer_argv: list[str]) -> None:
        self.n = int(options["executions"])
        self.tag = options["tag"]
        self.minimize = options.get("goal", "minimize") != "maximize"
        self.selection = options.get("selection", "best")
        self.seed_flag = options.get("seed-flag")
        self.argv = [sys.executable, "-m", options["module"], *trainer_argv]
        self.trial_id = os.environ.get("CLOUD_ML_TRIAL_ID", "0")
        self.seeds = run_seeds(f"trial/{self.trial_id}", self.n)
        self.metric_file = Path(os.environ.get("CLOUD_ML_HP_METRIC_FILE", DEFAULT_METRIC_FILE))
        self.reporter = MeanReporter(self.metric_file, self.tag, self.trial_id)
        self.curves: list[dict[int, float]] = []
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._forward)
        for k in range(1, self.n + 1):
            code = self._execute(k)
            self._write_result()
            if code != 0:
                seed = f", seed {self.seeds[k - 1]}" if self.seed_flag else ""
                sys.stderr.write(
                    f"{MODULE}: execution {k} of {self.n}{seed} failed (exit status {code}); "
                    f"the trial fails with it\n"
                )
                return code if code > 0 else 1
            if self.stopping:  # stopped early or cancelled: no further execution
                return 0
        return 0

    def _execute(self, k: int) -> int:
        env = execution_env(dict(os.environ), self.metric_file, k)
        own_file = Path(env["CLOUD_ML_HP_METRIC_FILE"])
        seed = [f"{self.seed_flag}={self.seeds[k - 1]}"] if self.seed_flag else []
        self.curves.append({})
        self.child = subprocess.Popen([*self.argv, *seed], env=env)  # noqa: S603 - argv list
        while (code := self.child.poll()) is None:
            self._take(own_file, last=k == self.n)
            time.sleep(POLL_S)
        self._take(own_file, last=k == self.n)
        return code

    def _take(self, own_file: Path, last: bool) -> None:
        """The running execution's points; while the last one runs, the mean grows with it."""
        for report in read_reports(own_file, self.tag):
            self.curves[-1][report.step] = report.value
        if not last:
            return
        combined = combine_executions(self.curves, self.minimize, self.selection)
        for step, mean in combined.curve:
            if step in self.curves[-1]:
                self.reporter.report(step, mean)

    def _forward(self, signum: int, _frame: object) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def _write_result(self) -> None:
        """executions.json beside AIP_MODEL_DIR (skipped, with a line, where it cannot be)."""
        model_dir = os.environ.get("AIP_MODEL_DIR")
        if not model_dir:
            return
        combined = combine_executions(self.curves, self.minimize, self.selection)
        result = {
            "tag": self.tag,
            "executions": self.n,
            "seeds": list(self.seeds) if self.seed_flag else [],
            "curves": [sorted(c.items()) for c in self.curves],
            "mean": [list(point) for point in combined.curve],
            "execution_scores": list(combined.execution_scores),
            "score": combined.score,
            "curve_score": combined.curve_score,
        }
        path = local_path(model_dir.rstrip("/")).parent / RESULT_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1))
        except OSError as err:
            sys.stderr.write(f"{MODULE}: could not write {path}: {err}\n")


def main(argv: Sequence[str] | None = None) -> int:
    options, trainer_argv = parse(sys.argv[1:] if argv is None else argv)
    return Repeat(options, trainer_argv).run()


if __name__ == "__main__":
    sys.exit(main())
