"""Orchestration overhead: dualtune's local backend (a process per trial) vs Keras Tuner in-process.

One study run three ways, one after the other: the flights space, a RandomSearch oracle with the
same seed and number of trials (so all three train the SAME parameter sets, which the script
checks), every trial a tiny run (--num_examples, --num_eval_examples, --num_epochs,
--skip_full_eval):
- keras-tuner: kt.RandomSearch in process (benchmarks/_kt_inprocess.py), the CSVs read once;
- dualtune prewarm: LocalBackend() (the default: every trial forked from the study's trial
  server, which did the imports and read the data once), parallel_trials=1;
- dualtune cold: LocalBackend(LocalSettings(prewarm=False)), parallel_trials=1.

Two frames, both printed (--frames):
- process: each study is a fresh interpreter, timed from its start to its exit, as a user runs
  it: the Keras Tuner script imports TensorFlow, then searches; dualtune's orchestrator starts
  its trial server, then imports Keras Tuner (TensorFlow) for its oracle. Each pays for one
  TensorFlow import before the first trial can train.
- session: the three studies run in this process after it imported TensorFlow; the study wall
  time starts at LocalBackend.run / kt.RandomSearch. Keras Tuner pays no import at all here,
  dualtune's trial server still does: the steady state plus that one cold start.

Time spent training, measured the same way for all: a trial's epochs times the mean gap between
its consecutive end-of-epoch reports (dualtune: the hypertune timestamps the trainer writes after
its per-epoch checkpoint; Keras Tuner: a callback placed after Keras Tuner's own per-epoch
callbacks). The first epoch's extra (tracing, the eval cache) is therefore overhead. Overhead per
trial = (study wall time - time spent training) / trials. As the trials are the same, the wall
time difference per trial is printed too: it needs no training estimate at all.

    .venv/bin/python benchmarks/overhead.py [--trials 6] [--rounds 1] [--num_epochs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402

from search_spaces.model import Budget  # noqa: E402

KT = "keras-tuner"
PREWARM = "dualtune prewarm"
COLD = "dualtune cold"
MODES = (KT, PREWARM, COLD)
FRAMES = ("process", "session")
FRAME_WORDS = {
    "process": "each study a fresh interpreter, timed start to exit",
    "session": "in this process, TensorFlow imported before the clock starts",
}


def study_space(args: argparse.Namespace):
    return _common.flights_space(
        algorithm="random", budget=Budget(args.trials, 1, max_failed_trials=args.trials)
    )


def run_mode(args: argparse.Namespace, mode: str, workdir: Path) -> _common.StudyResult:
    """One study, in this process. Only the Keras Tuner mode imports TensorFlow here."""
    space = study_space(args)
    if mode == KT:
        import _kt_inprocess

        return _kt_inprocess.run(args, space, workdir, KT)
    extra = (
        "--skip_full_eval",
        f"--num_examples={args.num_examples}",
        f"--num_eval_examples={args.num_eval_examples}",
        f"--eval_sample_seed={args.eval_sample_seed}",
        f"--num_epochs={args.num_epochs}",
    )
    return _common.run_local_study(
        mode, space, workdir, extra, prewarm=mode != COLD, seed=args.seed
    )


def run_in_child(args: argparse.Namespace, mode: str, workdir: Path) -> _common.StudyResult:
    """One study in a fresh interpreter; its wall time runs from the start to the exit."""
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        "--workdir",
        str(workdir),
    ]
    argv += [f"--{name}={getattr(args, name)}" for name in CHILD_OPTIONS]
    start = time.perf_counter()
    subprocess.run(argv, check=True, cwd=_common.REPO)  # noqa: S603 - argv list, no shell
    wall = time.perf_counter() - start
    raw = json.loads((workdir / "result.json").read_text())
    trials = [_common.TrialRecord(**t) for t in raw.pop("trials")]
    return _common.StudyResult(**{**raw, "trials": trials, "wall_s": wall})


CHILD_OPTIONS = (
    "trials",
    "num_examples",
    "num_eval_examples",
    "eval_sample_seed",
    "num_epochs",
    "seed",
)


def child_main(args: argparse.Namespace) -> None:
    result = run_mode(args, args.child, Path(args.workdir))
    (Path(args.workdir) / "result.json").write_text(json.dumps(dataclasses.asdict(result)))


def run_round(args: argparse.Namespace, frame: str, modes: list[str], root: Path) -> dict:
    results = {}
    for mode in modes:
        prefix = f"{frame}-{mode.replace(' ', '-')}-"
        workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        if frame == "process":
            results[mode] = run_in_child(args, mode, workdir)
        else:
            results[mode] = run_mode(args, mode, workdir)
        result = results[mode]
        print(f"  {frame} {mode}: {result.wall_s:.1f} s, status {result.status}", flush=True)
    return results


def same_parameters(results: dict) -> bool:
    """Whether every mode trained the same parameter sets, in the same order."""

    def rounded(params: dict) -> dict:
        return {k: round(v, 12) if isinstance(v, float) else v for k, v in params.items()}

    seen = [[rounded(t.params) for t in r.trials] for r in results.values()]
    return all(s == seen[0] for s in seen)


def totals(runs: list[dict], mode: str) -> dict:
    """Sums over the rounds of one mode: trials, wall, training; per-trial overhead."""
    results = [r[mode] for r in runs]
    trials = sum(len(r.trials) for r in results)
    wall = sum(r.wall_s for r in results)
    training = sum(r.training_s() for r in results)
    return {
        "trials": trials,
        "wall": wall,
        "training": training,
        "epoch": statistics.median(r.median_epoch_s() for r in results),
        "wall_per_trial": wall / max(trials, 1),
        "overhead": (wall - training) / max(trials, 1),
    }


def summarise(frame: str, runs: list[dict], modes: list[str], target_s: float) -> None:
    stats = {mode: totals(runs, mode) for mode in modes}
    base = stats.get(KT)
    rows = []
    for mode, t in stats.items():
        row = [
            mode,
            t["trials"],
            f"{t['wall']:.1f}",
            f"{t['training']:.1f}",
            f"{t['epoch']:.2f}",
            f"{t['wall_per_trial']:.2f}",
            f"{t['overhead']:.2f}",
        ]
        if base is None or mode == KT:
            row += ["-", "-", "-"]
        else:
            row += [
                f"{t['overhead'] - base['overhead']:+.2f}",
                f"{t['overhead'] / base['overhead']:.1f}x",
                f"{t['wall_per_trial'] - base['wall_per_trial']:+.2f}",
            ]
        rows.append(row)
    headers = [
        "mode",
        "trials",
        "wall s",
        "train s",
        "epoch s",
        "wall/trial s",
        "overhead/trial s",
        "- KT s",
        "/ KT",
        "wall/trial - KT s",
    ]
    print(f"\n{frame} frame ({FRAME_WORDS[frame]}):")
    print(_common.table(headers, rows))
    if base is not None and PREWARM in stats:
        extra = stats[PREWARM]["overhead"] - base["overhead"]
        met = "MET" if extra <= target_s else "NOT MET"
        print(
            f"target ({frame} frame): process isolation (prewarm on) costs at most {target_s:g} "
            f"s/trial over Keras Tuner in-process: {met} ({extra:+.2f} s/trial)"
        )
    if PREWARM in stats and COLD in stats:
        saved = stats[COLD]["overhead"] - stats[PREWARM]["overhead"]
        print(f"prewarm saves {saved:.2f} s/trial over cold starts")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per study")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the comparison; the order of the modes reverses each round",
    )
    parser.add_argument(
        "--modes",
        default=f"{KT},{PREWARM},{COLD}",
        help=f"comma-separated, from: {', '.join(MODES)}",
    )
    parser.add_argument("--num_examples", type=int, default=2000)
    parser.add_argument("--num_eval_examples", type=int, default=1000)
    parser.add_argument(
        "--eval_sample_seed",
        type=int,
        default=0,
        help="the trainer's validation sample (its default)",
    )
    parser.add_argument(
        "--num_epochs",
        type=int,
        default=3,
        help="at least 2: training time is measured between epoch reports",
    )
    parser.add_argument("--seed", type=int, default=1, help="oracle seed")
    parser.add_argument("--target_s", type=float, default=1.0)
    parser.add_argument(
        "--frames", default=",".join(FRAMES), help=f"comma-separated, from: {', '.join(FRAMES)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the study directories")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)  # run_in_child
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.num_epochs < 2:
        parser.error("--num_epochs must be at least 2")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {unknown[0]!r}; choose from {', '.join(MODES)}")
    args.frames = [f.strip() for f in args.frames.split(",") if f.strip()]
    if not args.frames or any(f not in FRAMES for f in args.frames):
        parser.error(f"--frames: choose from {', '.join(FRAMES)}")
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
        return
    modes = args.modes
    print(_common.machine_line())
    print(
        f"{args.trials} trials x {args.rounds} round(s): --num_examples={args.num_examples} "
        f"--num_eval_examples={args.num_eval_examples} --num_epochs={args.num_epochs} "
        f"--skip_full_eval; random search, seed {args.seed}, parallel_trials=1"
    )
    root = Path(tempfile.mkdtemp(prefix="dualtune-overhead-"))
    runs: dict[str, list[dict]] = {frame: [] for frame in args.frames}
    try:
        for number in range(args.rounds):
            order = modes if number % 2 == 0 else modes[::-1]
            print(f"round {number + 1}: {', '.join(order)}", flush=True)
            for frame in args.frames:
                runs[frame].append(run_round(args, frame, order, root))
                if not same_parameters(runs[frame][-1]):
                    print("  WARNING: the modes did not train the same parameter sets")
    finally:
        if args.keep:
            print(f"study directories kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load average after: {_common.load_average()}")
    for frame in args.frames:
        summarise(frame, runs[frame], modes, args.target_s)


if __name__ == "__main__":
    main()
