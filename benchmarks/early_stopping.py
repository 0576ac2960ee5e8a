"""Early stopping: the flights study with and without automated stopping, same oracle and seed.

Runs the same study once per policy (none first, the baseline) in this process, on the local
backend, one trial at a time: flights.yaml's ranges (learning_rate on a log scale from 1e-4 to
1e-2, so slow learners are common), a random-search oracle with one seed, so every policy
proposes the SAME parameter sets in the same order and only the stopping differs (the script
checks it). Prints, per policy: trials by status, epochs trained (reported epochs: a stopped
trial's partial next epoch is cut at the next batch and not counted), wall time and the study's
best val_rmse; then each policy against none, and the target: at least 40% fewer epochs with
the best val_rmse within 1%.

    .venv/bin/python benchmarks/early_stopping.py [--trials 8] [--num_epochs 5]
        [--policies none,median,decay_curve] [--algorithm random|bayesian]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402

from search_spaces.model import STOPPING_POLICIES, Budget, EarlyStopping  # noqa: E402

TARGET_FEWER = 0.40  # at least 40% fewer epochs
TARGET_BEST = 0.01  # best val_rmse within 1% of the run without stopping


def run_policy(args: argparse.Namespace, policy: str, root: Path) -> _common.StudyResult:
    space = _common.flights_space(
        algorithm=args.algorithm,
        budget=Budget(args.trials, args.parallel_trials, max_failed_trials=args.trials),
        early_stopping=EarlyStopping(
            policy=policy, min_steps=args.min_steps, min_trials=args.min_trials
        ),
    )
    extra = (
        "--skip_full_eval",
        f"--num_examples={args.num_examples}",
        f"--num_eval_examples={args.num_eval_examples}",
        f"--num_epochs={args.num_epochs}",
    )
    workdir = Path(tempfile.mkdtemp(prefix=f"{policy}-", dir=root))
    return _common.run_local_study(policy, space, workdir, extra, seed=args.seed)


def by_status(result: _common.StudyResult) -> dict[str, int]:
    counts = {"COMPLETED": 0, "STOPPED": 0, "FAILED": 0}
    for trial in result.trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    return counts


def summary_table(results: dict[str, _common.StudyResult]) -> str:
    rows = []
    for policy, r in results.items():
        counts = by_status(r)
        best = f"{r.best:.5f}" if r.best is not None else "-"
        rows.append(
            [policy, len(r.trials), counts["COMPLETED"], counts["STOPPED"], counts["FAILED"],
             r.epochs, f"{r.wall_s:.1f}", best]
        )  # fmt: skip
    headers = ["policy", "trials", "completed", "stopped", "failed", "epochs", "wall s", "best"]
    return _common.table(headers, rows)


def trial_table(results: dict[str, _common.StudyResult]) -> str:
    """Each trial's parameters, then per policy its epochs and best val_rmse (S: stopped)."""
    base = next(iter(results.values()))
    rows = []
    for number, trial in enumerate(base.trials):
        p = trial.params
        row = [number + 1, p["train_batch_size"], f"{p['learning_rate']:.2g}",
               p["dnn_hidden_units"], p["nbuckets"], p["nembeds"]]  # fmt: skip
        for r in results.values():
            t = r.trials[number] if number < len(r.trials) else None
            if t is None:
                row.append("-")
                continue
            flag = {"STOPPED": " S", "FAILED": " F"}.get(t.status, "")
            best = f"{t.final:.4f}" if t.final is not None else "-"
            row.append(f"{len(t.steps)} ep {best}{flag}")
        rows.append(row)
    headers = ["#", "batch", "lr", "hidden", "nbuckets", "nembeds", *results]
    return _common.table(headers, rows)


def same_parameters(results: dict[str, _common.StudyResult]) -> bool:
    seen = [[t.params for t in r.trials] for r in results.values()]
    return all(s == seen[0] for s in seen)


def verdicts(results: dict[str, _common.StudyResult]) -> list[str]:
    base = results["none"]
    lines = []
    for policy, r in results.items():
        if policy == "none":
            continue
        fewer = 1 - r.epochs / base.epochs
        ratio = r.best / base.best if r.best and base.best else float("nan")
        met = fewer >= TARGET_FEWER and ratio <= 1 + TARGET_BEST
        lines.append(
            f"{policy}: {fewer:.0%} fewer epochs ({r.epochs}/{base.epochs} = "
            f"{r.epochs / base.epochs:.2f}x), best val_rmse {ratio:.4f}x, wall "
            f"{r.wall_s / base.wall_s:.2f}x -> target {'MET' if met else 'NOT MET'}"
        )
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--num_epochs", type=int, default=5)
    parser.add_argument("--num_examples", type=int, default=4000)
    parser.add_argument("--num_eval_examples", type=int, default=2000)
    parser.add_argument("--policies", default="none,median", help="none is always run, first")
    parser.add_argument("--algorithm", default="random", choices=("random", "bayesian"))
    parser.add_argument("--seed", type=int, default=1, help="oracle seed")
    parser.add_argument("--parallel_trials", type=int, default=1)
    defaults = EarlyStopping()
    parser.add_argument("--min_steps", type=int, default=defaults.min_steps)
    parser.add_argument("--min_trials", type=int, default=defaults.min_trials)
    parser.add_argument("--keep", action="store_true", help="keep the study directories")
    args = parser.parse_args()
    args.policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in args.policies if p not in STOPPING_POLICIES]
    if unknown:
        parser.error(f"--policies: unknown {unknown[0]!r}; use {', '.join(STOPPING_POLICIES)}")
    if "none" in args.policies:
        args.policies.remove("none")
    args.policies.insert(0, "none")  # the baseline, first
    return args


def main() -> None:
    args = parse_args()
    print(_common.machine_line())
    print(
        f"{args.trials} trials of --num_epochs={args.num_epochs} --num_examples="
        f"{args.num_examples} --num_eval_examples={args.num_eval_examples} --skip_full_eval; "
        f"{args.algorithm} search, seed {args.seed}, parallel_trials={args.parallel_trials}, "
        f"min_steps={args.min_steps}, min_trials={args.min_trials}"
    )
    root = Path(tempfile.mkdtemp(prefix="dualtune-early-stopping-"))
    results = {}
    try:
        for policy in args.policies:
            results[policy] = run_policy(args, policy, root)
            r = results[policy]
            print(f"  {policy}: {r.wall_s:.1f} s, {r.epochs} epochs, {r.status}", flush=True)
    finally:
        if args.keep:
            print(f"study directories kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load average after: {_common.load_average()}\n")
    print(summary_table(results))
    print()
    print(trial_table(results))
    if not same_parameters(results) and args.algorithm == "random":
        print("WARNING: the policies did not propose the same parameter sets")
    print()
    for line in verdicts(results):
        print(line)


if __name__ == "__main__":
    main()
