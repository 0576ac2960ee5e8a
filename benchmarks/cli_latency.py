"""CLI latency: the read commands against `dualtune --help`, and the MLflow recorder's write rate.

In a temporary directory it writes, through dualtune's own MlflowRecorder and recording lane
(StudyStarted, then per trial TrialStarted, Measured x epochs, TrialEnded, then StudyEnded, all
handed over at once, as a replay after an outage would), one study of 1,000 trials of 10 epochs
into a SQLite MLflow store, and times it: the recorder's throughput in points/s. In the same run
the same points go through MlflowClient.log_batch alone, 1,000 a call into one run: MLflow's own
floor; and --baseline-trials trials go through the recorder writing each point at once (one call
a point, as it did before batching). Then it times each command as a fresh subprocess (median of
--repeats), against `dualtune --help` measured in the same run:

    space show search_spaces/flights.yaml --target keras-tuner|vertex    target <= 3x --help
    trials --study S                      (the 1,000-trial study)      target < 5 s
    compare ...                           (skipped, with a note, where the CLI has no compare)

    .venv/bin/python benchmarks/cli_latency.py [--trials 1000] [--epochs 10] [--repeats 5]
        [--baseline-trials 100] [--compare-args "{study} --output {root}/compare.png"]

It prints; it asserts nothing (see benchmarks/_common.py).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # before MLflow is imported

import _common  # noqa: E402

STUDY = "latency"
SPACE = _common.FLIGHTS


def study_events(trials: int, epochs: int, study: str = STUDY) -> list:
    from backends.base import (
        COMPLETED,
        Measured,
        StudyEnded,
        StudyStarted,
        TrialEnded,
        TrialStarted,
    )

    space = _common.flights_space()
    events: list = [StudyStarted(study, "local", "random", space, workdir=study)]
    now = time.time()
    for t in range(trials):
        params = {"train_batch_size": 64, "nbuckets": 5, "dnn_hidden_units": "64,16"}
        params.update({"learning_rate": 1e-3 * (1 + t % 7), "nembeds": 3})
        events.append(TrialStarted(str(t), t + 1, params))
        events += [Measured(str(t), e, 0.5 - e / 100 + t / 1e5, now) for e in range(1, epochs + 1)]
        events.append(TrialEnded(str(t), COMPLETED, 0.5 - epochs / 100 + t / 1e5))
    return [*events, StudyEnded(study, COMPLETED, "0", 0.4)]


def record(uri: str, trials: int, epochs: int, point_by_point: bool = False) -> float:
    """Seconds the recorder takes to write the study (events handed over at once);
    `point_by_point`: one write a point, as the recorder did before it batched (the baseline)."""
    from dualtune.mlflow_recorder import MlflowRecorder
    from dualtune.recording import Dispatcher

    class PointByPoint(MlflowRecorder):
        def handle(self, event) -> None:
            super().handle(event)
            self.flush()

    study = "point-by-point" if point_by_point else STUDY
    events = study_events(trials, epochs, study)
    recorder = (PointByPoint if point_by_point else MlflowRecorder)(uri)
    recorder.client.search_experiments()  # the store exists (schema created) before the clock
    start = time.perf_counter()
    dispatcher = Dispatcher([recorder])
    for event in events:
        dispatcher(event)
    if not dispatcher.close(timeout_s=3600):
        raise SystemExit("the recorder did not finish")
    return time.perf_counter() - start


def log_batch_floor(uri: str, points: int) -> float:
    """Seconds MlflowClient.log_batch alone takes for `points` points, 1,000 a call."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("floor")).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(f"m{i // 10}", 0.5, now, i % 10 + 1) for i in range(points)]
    start = time.perf_counter()
    for i in range(0, points, 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    return time.perf_counter() - start


def time_command(args: list[str], cwd: Path, repeats: int) -> tuple[float | None, str]:
    """Median wall seconds of `dualtune ARGS` as a fresh process; None and why if it failed."""
    argv = [sys.executable, "-m", "dualtune.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(_common.REPO)}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            return None, (done.stderr.strip().splitlines() or ["?"])[-1][:160]
    return statistics.median(times), ""


def has_command(name: str, cwd: Path) -> bool:
    argv = [sys.executable, "-m", "dualtune.cli", name, "--help"]
    env = {**os.environ, "PYTHONPATH": str(_common.REPO)}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False).returncode == 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--baseline-trials", type=int, default=100, help="trials written point by point (0: none)"
    )
    p.add_argument("--compare-args", default="{study} --output {root}/compare.png")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cli-latency-"))
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    (root / "mlruns").mkdir()
    points = args.trials * args.epochs
    print(f"{_common.load_average_line()}; store {root}")
    write_s = record(uri, args.trials, args.epochs)
    floor_s = log_batch_floor(uri, points)
    print(
        f"recorder: {points} points ({args.trials} trials x {args.epochs} epochs) in "
        f"{write_s:.1f} s = {points / write_s:.0f} points/s; MlflowClient.log_batch alone "
        f"(1,000 a call): {floor_s:.2f} s = {points / floor_s:.0f} points/s "
        f"({write_s / floor_s:.1f}x the floor)"
    )
    if args.baseline_trials:
        base_points = args.baseline_trials * args.epochs
        base_s = record(uri, args.baseline_trials, args.epochs, point_by_point=True)
        print(
            f"point by point (one write a point, the recorder before batching): {base_points} "
            f"points in {base_s:.1f} s = {base_points / base_s:.0f} points/s; batched is "
            f"{(points / write_s) / (base_points / base_s):.2f}x that"
        )
    commands = [
        ("--help", ["--help"], None),
        ("space show (keras-tuner)", ["space", "show", str(SPACE), "--target", "keras-tuner"], 3),
        ("space show (vertex)", ["space", "show", str(SPACE), "--target", "vertex"], 3),
        ("trials", ["trials", "--study", STUDY, "--tracking-uri", uri], "5 s"),
    ]
    if has_command("compare", root):
        compare = shlex.split(args.compare_args.format(study=STUDY, root=root))
        commands.append(("compare", ["compare", *compare, "--tracking-uri", uri], "5 s"))
    else:
        print("compare: skipped, this dualtune has no `compare` subcommand")
    rows, help_s = [], None
    for label, argv, target in commands:
        seconds, why = time_command(argv, root, args.repeats)
        help_s = seconds if label == "--help" else help_s
        rows.append(_row(label, seconds, why, help_s, target))
    print(_common.table(["command", "median s", "x --help", "target", "verdict"], rows))


def _row(label: str, seconds: float | None, why: str, help_s: float | None, target) -> list:
    if seconds is None:
        return [label, "failed", "-", str(target or "-"), why]
    ratio = seconds / help_s if help_s else float("nan")
    if target is None:
        verdict = "baseline"
    elif isinstance(target, int):
        verdict = "met" if ratio <= target else "NOT met"
        target = f"<= {target}x"
    else:
        verdict = "met" if seconds < float(target.split()[0]) else "NOT met"
        target = f"< {target}"
    return [label, f"{seconds:.3f}", f"{ratio:.1f}", target or "-", verdict]


if __name__ == "__main__":
    main()
