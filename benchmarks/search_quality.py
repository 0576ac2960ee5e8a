"""Search quality: best-so-far regret of each search algorithm, random search the baseline.

Test functions with mixed parameter types (Branin plus an integer and a categorical; Hartmann-6)
are searched through the same oracle code the local backend uses (backends/local/oracles.py
build_oracle; create_trial / update_trial / end_trial in this process, no trial processes), and
through the emulator's ALGORITHM_UNSPECIFIED suggester (vertex_emulator/suggest.py:
Vizier's GP-UCB-PE with the vizier extra, Keras Tuner's GP without). For each (function,
algorithm) it prints the median and interquartile range over seeds of the regret (best value so
far minus the function's minimum) after each budget, the mean seconds per suggestion, and how
many trials the median run needed to reach random search's median regret at the largest budget.

`--flights` adds a short flights study per algorithm through the real local backend (trials as
processes, a small data sample): its best val_rmse so far, since its minimum is unknown.

A Gaussian-process suggestion costs seconds (Vizier's and Keras Tuner's alike, see
docs/benchmarks.md), so `--gp-seeds`/`--gp-trials` (Vizier) and `--bayesian-seeds`/
`--bayesian-trials` (Keras Tuner's GP) bound those runs separately from random search.

    .venv/bin/python benchmarks/search_quality.py                # everything, the full budget
    .venv/bin/python benchmarks/search_quality.py --gp-seeds 3 --gp-trials 20   # what fits
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402 - benchmarks run as scripts from the repository root

from dualtune.study_record import write_json_atomic  # noqa: E402
from search_spaces.model import Budget, Metric, Parameter, SearchSpace  # noqa: E402

ORACLE_ALGORITHMS = ("random", "bayesian", "vizier")
GP_ALGORITHMS = ("vizier", "emulator-bayesian")  # the costly ones (with the vizier extra)
CATEGORY_COST = {"a": 0.0, "b": 1.0, "c": 3.0}
# Keras Tuner seeds each sampled value with seed, seed + 1, ...: seeds 1 and 5 of a 4-parameter
# space would share all but one trial. Seeds far apart keep the runs independent.
SEED_STRIDE = 10_007


def seed_list(count: int, skip: int = 0) -> range:
    """The seeds of `count` runs, the first `skip` left out (`--skip-seeds`: extend a saved run)."""
    return range(SEED_STRIDE * (skip + 1), SEED_STRIDE * (count + 1), SEED_STRIDE)


@dataclass(frozen=True)
class TestFunction:
    name: str
    space: SearchSpace
    minimum: float

    def __call__(self, v: dict[str, Any]) -> float:
        return FUNCTIONS_F[self.name](v)


def branin_mixed(v: dict[str, Any]) -> float:
    """Branin (min 0.397887) plus |k - 2| for an integer k and a cost for a categorical c."""
    x1, x2 = v["x1"], v["x2"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    branin = (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10
    return branin + abs(v["k"] - 2) + CATEGORY_COST[v["c"]]


_H_A = [
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
]
_H_P = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
]
_H_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(v: dict[str, Any]) -> float:
    """Hartmann-6 on [0, 1]^6 (min -3.32237)."""
    x = [v[f"x{i}"] for i in range(1, 7)]
    return -sum(
        a * math.exp(-sum(_H_A[i][j] * (x[j] - _H_P[i][j]) ** 2 for j in range(6)))
        for i, a in enumerate(_H_ALPHA)
    )


FUNCTIONS_F = {"branin_mixed": branin_mixed, "hartmann6": hartmann6}


def _space(name: str, parameters: tuple[Parameter, ...]) -> SearchSpace:
    return SearchSpace(
        name=name, parameters=parameters, metric=Metric("objective"), budget=Budget(40, 1, 0)
    )


FUNCTIONS = {
    "branin_mixed": TestFunction(
        "branin_mixed",
        _space(
            "branin_mixed",
            (
                Parameter("x1", "double", min=-5.0, max=10.0),
                Parameter("x2", "double", min=0.0, max=15.0),
                Parameter("k", "integer", min=0, max=8),
                Parameter("c", "categorical", values=("a", "b", "c")),
            ),
        ),
        0.397887,
    ),
    "hartmann6": TestFunction(
        "hartmann6",
        _space(
            "hartmann6",
            tuple(Parameter(f"x{i}", "double", min=0.0, max=1.0) for i in range(1, 7)),
        ),
        -3.32237,
    ),
}


# -- one search -------------------------------------------------------------------------------


def search_oracle(fn: TestFunction, algorithm: str, seed: int, trials: int, args) -> dict:
    """One search through build_oracle, as the local backend drives it."""
    from backends.local.oracles import build_oracle

    with tempfile.TemporaryDirectory(prefix="search-quality-") as workdir:
        oracle = build_oracle(fn.space, algorithm, trials, seed, Path(workdir))
        _apply_knobs(oracle, algorithm, args)
        values, seconds, points = [], [], []
        for _ in range(trials):
            start = time.perf_counter()
            trial = oracle.create_trial("bench")
            seconds.append(time.perf_counter() - start)
            if trial.status != "RUNNING":
                break
            params = fn.space.cast_values(trial.hyperparameters.values)  # drops tuner/ keys
            y = fn(params)
            oracle.update_trial(trial.trial_id, {"objective": y})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
            values.append(y)
            points.append(params)
    return {"values": values, "seconds": seconds, "points": points}


def _apply_knobs(oracle: Any, algorithm: str, args) -> None:
    if algorithm != "bayesian":
        return
    if args.kt_initial is not None:
        oracle.num_initial_points = args.kt_initial
    if args.kt_beta is not None:
        oracle.beta = args.kt_beta


def search_emulator(fn: TestFunction, seed: int, trials: int) -> dict:
    """One search through the emulator's ALGORITHM_UNSPECIFIED suggester."""
    from vertex_emulator.suggest import make_suggester

    params = [_emulator_param(p) for p in fn.space.parameters]
    with tempfile.TemporaryDirectory(prefix="search-quality-") as workdir:
        suggester = make_suggester(0, params, "objective", True, seed, Path(workdir))
        values, seconds, points = [], [], []
        for number in range(1, trials + 1):
            start = time.perf_counter()
            point = suggester.suggest(str(number))
            seconds.append(time.perf_counter() - start)
            y = fn(point)
            suggester.tell(str(number), y)
            values.append(y)
            points.append(point)
    return {"values": values, "seconds": seconds, "points": points}


def _emulator_param(p: Parameter):
    from vertex_emulator import specs

    if p.type == "categorical":
        return specs.Param(p.name, specs.CATEGORICAL, values=p.values)
    kind = specs.INTEGER if p.type == "integer" else specs.DOUBLE
    return specs.Param(p.name, kind, p.min, p.max, scale=specs.LINEAR)


# -- the flights study ------------------------------------------------------------------------


def search_flights(algorithm: str, seed: int, trials: int, args) -> dict:
    """A short flights study on the real local backend: best val_rmse so far per trial."""
    space = _common.flights_space(algorithm=algorithm, budget=Budget(trials, 1, trials))
    extra = (
        "--skip_full_eval",
        f"--num_examples={args.flights_examples}",
        f"--num_eval_examples={args.flights_examples // 2}",
        f"--num_epochs={args.flights_epochs}",
    )
    with tempfile.TemporaryDirectory(prefix="search-quality-flights-") as workdir:
        result = _common.run_local_study(algorithm, space, Path(workdir), extra, seed=seed)
    values = [t.final for t in result.trials if t.final is not None]
    return {"values": values, "seconds": [result.wall_s / max(1, len(result.trials))]}


# -- summary ----------------------------------------------------------------------------------


def best_so_far(values: list[float], minimum: float) -> list[float]:
    regret, best = [], math.inf
    for v in values:
        best = min(best, v)
        regret.append(best - minimum)
    return regret


def at(curve: list[float], budget: int) -> float | None:
    return curve[budget - 1] if len(curve) >= budget else None


def spread(xs: list[float]) -> str:
    if not xs:
        return "-"
    if len(xs) < 2:
        return f"{xs[0]:.3g} (n=1)"
    q1, med, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return f"{med:.3g} [{q1:.3g}, {q3:.3g}]"


def trials_to_reach(curves: list[list[float]], target: float) -> str:
    """Trials the median run (the lower median) needs to reach `target` regret ('>N' when it
    does not within its N trials)."""
    firsts = []
    for curve in curves:
        hit = next((i + 1 for i, r in enumerate(curve) if r <= target), None)
        firsts.append(hit if hit is not None else math.inf)
    med = statistics.median_low(firsts)
    longest = max(len(c) for c in curves)
    return f">{longest}" if math.isinf(med) else f"{med:g}"


def runs_reaching(curves: list[list[float]], target: float, budget: int) -> str:
    """How many runs reached `target` regret within `budget` trials (the target's half-budget
    test, seed by seed)."""
    hits = sum(1 for c in curves if any(r <= target for r in c[:budget]))
    return f"{hits}/{len(curves)}"


def summarise(
    name: str,
    runs: dict[str, list[dict]],
    minimum: float,
    budgets: list[int],
    label: str = "regret",
    seconds: str = "s/suggest",
) -> str:
    curves = {a: [best_so_far(r["values"], minimum) for r in rs] for a, rs in runs.items()}
    top = max(budgets)
    baseline = [at(c, top) for c in curves.get("random", [])]
    baseline = [b for b in baseline if b is not None]
    target = statistics.median(baseline) if baseline else None
    headers = ["algorithm", "seeds", *[f"{label}@{b}" for b in budgets], seconds]
    headers += [f"trials to random@{top}", f"runs there by {top // 2}"]
    rows = []
    for algorithm, cs in curves.items():
        row: list[Any] = [algorithm, len(cs)]
        for b in budgets:
            xs = [x for c in cs if (x := at(c, b)) is not None]
            row.append(spread(xs) + (f" n={len(xs)}" if 1 < len(xs) < len(cs) else ""))
        secs = [s for r in runs[algorithm] for s in r["seconds"]]
        row.append(f"{statistics.mean(secs):.2f}" if secs else "-")
        row.append(trials_to_reach(cs, target) if target is not None else "-")
        row.append(runs_reaching(cs, target, top // 2) if target is not None else "-")
        rows.append(row)
    head = f"{name}: median [q1, q3] over seeds of the best-so-far {label}"
    if target is not None:
        head += f"; random's median {label}@{top} = {target:.3g}"
    return head + "\n" + _common.table(headers, rows)


# -- the run ----------------------------------------------------------------------------------


def run_function(fn: TestFunction, args, runs: dict[str, list[dict]], save) -> None:
    """Every (algorithm, seed) run of `fn` into `runs`; `save()` after each one."""
    top = max(args.budgets)
    for algorithm in args.algorithms:
        seeds, trials = args.seeds, top
        if algorithm in GP_ALGORITHMS:
            seeds, trials = args.gp_seeds, min(top, args.gp_trials)
        elif algorithm == "bayesian":
            seeds, trials = args.bayesian_seeds, min(top, args.bayesian_trials)
        runs[algorithm] = []
        for seed in seed_list(seeds, args.skip_seeds):
            start = time.perf_counter()
            if algorithm == "emulator-bayesian":
                run = search_emulator(fn, seed, trials)
            else:
                run = search_oracle(fn, algorithm, seed, trials, args)
            run["seed"] = seed
            runs[algorithm].append(run)
            save()
            print(
                f"  {fn.name} {algorithm} seed {seed}: best {min(run['values']):.4g} "
                f"after {len(run['values'])} trials, {time.perf_counter() - start:.1f} s",
                flush=True,
            )


def run_flights(args, runs: dict[str, list[dict]], save) -> None:
    for algorithm in [a for a in args.algorithms if a in ORACLE_ALGORITHMS]:
        runs[algorithm] = []
        for seed in seed_list(args.flights_seeds, args.skip_seeds):
            run = search_flights(algorithm, seed, args.flights_trials, args)
            run["seed"] = seed
            runs[algorithm].append(run)
            save()
            print(f"  flights {algorithm} seed {seed}: {run['values']}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", default="branin_mixed,hartmann6")
    parser.add_argument(
        "--algorithms", default="random,bayesian,vizier,emulator-bayesian", help="comma-separated"
    )
    parser.add_argument("--budgets", default="10,20,40", help="trial counts to report")
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the fast algorithms")
    parser.add_argument("--gp-seeds", type=int, default=10, help="seeds of the Vizier GP runs")
    parser.add_argument("--gp-trials", type=int, default=40, help="trials of the Vizier GP runs")
    parser.add_argument("--bayesian-seeds", type=int, default=10, help="seeds of bayesian")
    parser.add_argument("--bayesian-trials", type=int, default=40, help="trials of bayesian")
    parser.add_argument(
        "--skip-seeds", type=int, default=0, help="start at the (N+1)th seed (extend a saved run)"
    )
    parser.add_argument("--kt-initial", type=int, help="Keras Tuner GP: num_initial_points")
    parser.add_argument("--kt-beta", type=float, help="Keras Tuner GP: UCB beta")
    parser.add_argument("--flights", action="store_true", help="add a short flights study")
    parser.add_argument("--flights-seeds", type=int, default=2)
    parser.add_argument("--flights-trials", type=int, default=8)
    parser.add_argument("--flights-examples", type=int, default=2000)
    parser.add_argument("--flights-epochs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write every run's values here")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        help="only print the tables of saved runs (several files: their runs side by side)",
    )
    args = parser.parse_args()
    args.functions = [f for f in args.functions.split(",") if f]
    args.algorithms = [a for a in args.algorithms.split(",") if a]
    args.budgets = sorted(int(b) for b in args.budgets.split(","))
    unknown = [f for f in args.functions if f not in FUNCTIONS]
    unknown += [a for a in args.algorithms if a not in (*ORACLE_ALGORITHMS, *GP_ALGORITHMS)]
    if unknown:
        parser.error(f"unknown function or algorithm: {', '.join(unknown)}")
    return args


def merge_saved(paths: list[Path]) -> dict[str, dict[str, list[dict]]]:
    """The runs of several saved files, one per (function, algorithm, seed): a seed run twice
    (20 trials in one file, 40 in another) keeps its longer run, which must begin with the
    shorter one (a seeded search repeats itself; anything else is an error). Runs without a
    "seed" (files from before it was saved) are in seed order, as run_function makes them."""
    merged: dict[str, dict[str, dict[int, dict]]] = {}
    for path in paths:
        for name, runs in json.loads(path.read_text()).items():
            for algorithm, rs in runs.items():
                by_seed = merged.setdefault(name, {}).setdefault(algorithm, {})
                for positional, run in zip(seed_list(len(rs)), rs, strict=True):
                    seed = run.get("seed", positional)
                    old = by_seed.get(seed)
                    if old is not None:
                        short, long = sorted((old, run), key=lambda r: len(r["values"]))
                        if long["values"][: len(short["values"])] != short["values"]:
                            sys.exit(
                                f"{path}: {name} {algorithm} seed {seed} differs from its "
                                "earlier run; merge files of one code version only"
                            )
                        run = long
                    by_seed[seed] = run
    return {
        name: {a: [runs[s] for s in sorted(runs)] for a, runs in algorithms.items()}
        for name, algorithms in merged.items()
    }


def flights_table(runs: dict[str, list[dict]], args) -> str:
    """The flights study's table: best val_rmse so far (its minimum is unknown) at a quarter,
    half and all of --flights-trials."""
    n = args.flights_trials
    budgets = sorted({max(1, n // 4), max(1, n // 2), n})
    return summarise("flights", runs, 0.0, budgets, "val_rmse", "s/trial")


def print_saved(args) -> None:
    results = merge_saved(args.from_json)
    for name, runs in results.items():
        if name == "flights":
            print(flights_table(runs, args), end="\n\n")
        else:
            print(summarise(name, runs, FUNCTIONS[name].minimum, args.budgets), end="\n\n")


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    args = parse_args()
    from vertex_emulator.suggest import bayesian_designer

    if args.from_json:
        print_saved(args)
        return
    print(_common.machine_line())
    print(f"emulator ALGORITHM_UNSPECIFIED: {bayesian_designer()}")
    print(" ".join(sys.argv))
    results: dict[str, Any] = {}

    def save() -> None:  # after every run, so a stopped benchmark keeps what it measured
        if args.json:
            write_json_atomic(args.json, results)

    tables = []
    for name in args.functions:
        fn = FUNCTIONS[name]
        results[name] = {}
        run_function(fn, args, results[name], save)
        tables.append(summarise(name, results[name], fn.minimum, args.budgets))
        print(tables[-1], flush=True)
    if args.flights:
        results["flights"] = {}
        run_flights(args, results["flights"], save)
        tables.append(flights_table(results["flights"], args))
        print(tables[-1], flush=True)
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
