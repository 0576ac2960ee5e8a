"""Signal and noise of the tuning budget: can a trial at this budget tell configurations apart?

For each candidate training budget (--num_examples x --num_epochs) it trains, with the real
trainer (trainer.task.main, in this process, one run at a time):
- the trainer's defaults (the initial guess) with --default-seeds training seeds, and
- --configs configurations drawn at random from search_spaces/flights.yaml (a fixed draw seed),
  each with --config-seeds training seeds.
Each trained model (its exported model.keras) then predicts the whole eval split and the whole
test split once; the RMSE on the validation sample of each candidate size (trainer.data's
fixed sample, --eval_sample_seed 0: a smaller sample is part of a larger one) is computed from
those predictions, so one training run serves every validation size.

Per (budget, validation size) it prints:
- noise: the pooled within-configuration sd over training seeds (every configuration, the
  guess included), and the guess's own seed sd;
- signal: the sd of the drawn configurations' mean scores, and that spread with the noise's
  share taken out (sqrt(var(means) - noise^2 * mean(1/n)), 0 when negative);
- signal / noise, and the Spearman rank correlation between the configurations' means on the
  validation sample and on the held-out test split (does the sample rank them as held-out
  data would);
- the mean seconds per trial (trainer.task.main in process: no interpreter start, which the
  local trial server saves too; with a 5000-row validation each epoch).

Short against long (--short-vs-long, docs/benchmarks.md "Trust"): per budget but the dearest,
the Spearman rank correlation of every configuration's (the guess included) validation-sample
mean with its test mean at the dearest budget (e.g. flights.yaml's finalize budget, 100000x10),
with a bootstrap interval over configurations, the same per single training seed (one trial a
configuration, as a study runs) and among the better half. --seeds-at gives a budget its own
seed count for every configuration (100000x10=2: a dear budget at fewer seeds).

Every run is saved to --json as soon as it ends (a partial run still reports; --resume skips
the runs already there); --from-json only prints the tables of a saved file.

    .venv/bin/python benchmarks/signal_noise.py --json signal_noise.json
    .venv/bin/python benchmarks/signal_noise.py --budgets 2000x1 --configs 2 \
        --default-seeds 2 --config-seeds 2 --eval-sizes 500,1000     # a smoke run
    .venv/bin/python benchmarks/signal_noise.py --budgets 10000x2,100000x10 --configs 9 \
        --default-seeds 3 --config-seeds 3 --seeds-at 100000x10=2 --eval-sizes 20000 \
        --fit-eval-rows 20000 --short-vs-long --json short_vs_long.json   # short against long
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402 - benchmarks run as scripts from the repository root

DEFAULT = "guess"  # the trainer's defaults: no parameter flag
SAMPLE_SEED = 0  # the trainer's --eval_sample_seed default
FIT_EVAL_ROWS = 5000  # the validation each epoch inside the timed run (--fit-eval-rows)


# ---------------------------------------------------------------- arithmetic (tested)


@dataclass(frozen=True)
class SignalNoise:
    """How far apart configurations score, against how far one configuration's seeds do."""

    signal: float  # sd of the configurations' mean scores
    true_signal: float  # the same with the noise's share of var(means) removed (0 if below)
    noise: float  # pooled within-configuration sd over training seeds
    configs: int

    @property
    def ratio(self) -> float:
        return self.signal / self.noise if self.noise > 0 else math.inf


def pooled_sd(groups: list[list[float]]) -> float:
    """The within-group sd pooled over groups (each weighted by its degrees of freedom)."""
    squares = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups if len(g) > 1)
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    if dof == 0:
        raise ValueError("noise needs a group with at least two values")
    return math.sqrt(squares / dof)


def signal_noise(drawn: list[list[float]], others: list[list[float]] = ()) -> SignalNoise:
    """Signal from the `drawn` configurations' scores (one list per configuration, one value
    per training seed); noise pooled over `drawn` and `others` (e.g. the guess's seeds)."""
    drawn = [g for g in drawn if g]
    if len(drawn) < 2:
        raise ValueError("signal needs at least two configurations")
    means = [statistics.fmean(g) for g in drawn]
    noise = pooled_sd([*drawn, *others])
    variance = statistics.variance(means)
    share = noise**2 * statistics.fmean(1 / len(g) for g in drawn)
    return SignalNoise(
        math.sqrt(variance), math.sqrt(max(0.0, variance - share)), noise, len(drawn)
    )


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("spearman needs two equally long lists of at least two values")
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    norm = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / norm if norm else float("nan")


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def rmse(predictions: Any, labels: Any) -> float:
    import numpy as np

    diff = np.asarray(predictions, np.float64).ravel() - np.asarray(labels, np.float64).ravel()
    return float(np.sqrt(np.mean(diff**2)))


# ---------------------------------------------------------------- configurations


def draw_configs(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` parameter sets drawn uniformly (log-uniformly on a log scale) from flights.yaml."""
    import numpy as np

    rng = np.random.default_rng(seed)
    space = _common.flights_space()
    return [{p.name: _draw(p, rng) for p in space.parameters} for _ in range(count)]


def _draw(parameter: Any, rng: Any) -> Any:
    if parameter.type == "categorical":
        return parameter.values[int(rng.integers(len(parameter.values)))]
    low, high = float(parameter.min), float(parameter.max)
    if parameter.type == "integer":
        low, high = low - 0.5, high + 0.5  # each integer equally likely (linear scale)
    if parameter.scale == "log":
        value = math.exp(rng.uniform(math.log(max(low, 1e-12)), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if parameter.type == "integer":
        return int(min(max(round(value), parameter.min), parameter.max))
    if parameter.type == "double":
        return float(f"{value:.3g}")
    raise ValueError(f"cannot draw a {parameter.type} parameter ({parameter.name})")


def flags_of(params: dict[str, Any]) -> list[str]:
    space = {p.name: p for p in _common.flights_space().parameters}
    return [space[name].as_flag(value) for name, value in params.items()]


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class Budget:
    examples: int
    epochs: int

    @property
    def label(self) -> str:
        return f"{self.examples}x{self.epochs}"

    @staticmethod
    def parse(text: str) -> Budget:
        examples, epochs = text.lower().split("x")
        return Budget(int(examples), int(epochs))


class Evaluator:
    """The eval and test splits, read once; a trained model's RMSE on any validation size."""

    def __init__(self, eval_sizes: list[int]) -> None:
        from trainer import data
        from trainer.embedded import ensure_data

        self.paths = ensure_data()
        self.eval = data.read_csv(str(self.paths["eval"]))
        self.test = data.read_csv(str(self.paths["test"]))
        self.sizes = eval_sizes
        self.positions = {
            n: data.sample_positions(len(self.eval), min(n, len(self.eval)), SAMPLE_SEED)
            for n in eval_sizes
        }
        self.datasets = {
            "eval": data.eval_dataset(self.eval, 4096),
            "test": data.eval_dataset(self.test, 4096),
        }

    def scores(self, model_path: Path) -> dict[str, float]:
        import keras

        model = keras.models.load_model(model_path)
        eval_p = model.predict(self.datasets["eval"], verbose=0)
        test_p = model.predict(self.datasets["test"], verbose=0)
        labels = self.eval["ontime"].to_numpy()
        out = {str(n): rmse(eval_p[pos], labels[pos]) for n, pos in self.positions.items()}
        out["eval_all"] = rmse(eval_p, labels)
        out["test"] = rmse(test_p, self.test["ontime"].to_numpy())
        return out


def train_once(
    budget: Budget, params: dict[str, Any], seed: int, evaluator: Evaluator, fit_rows: int
) -> dict:
    """One trainer run in this process; its wall time and scores (None if it failed)."""
    import keras

    from trainer import task

    with tempfile.TemporaryDirectory(prefix="signal-noise-") as tmp:
        os.environ["CLOUD_ML_HP_METRIC_FILE"] = str(Path(tmp) / "hypertune.txt")
        argv = [
            "--skip_full_eval",
            f"--num_examples={budget.examples}",
            f"--num_epochs={budget.epochs}",
            f"--num_eval_examples={fit_rows}",
            f"--seed={seed}",
            f"--output_dir={tmp}",
            *flags_of(params),
        ]
        start = time.perf_counter()
        status = task.main(argv)
        wall = time.perf_counter() - start
        record = {"status": status, "wall_s": wall, "argv": [a for a in argv if tmp not in a]}
        if status == 0 and not (Path(tmp) / "model" / "model.keras").is_file():
            record["status"] = "stopped"  # by SIGTERM: the trainer exports nothing then
        if status == 0 and record["status"] == 0:
            record["scores"] = evaluator.scores(Path(tmp) / "model" / "model.keras")
            fit = json.loads((Path(tmp) / "model" / "metrics.json").read_text())
            record["fit_val_rmse"] = fit["val_rmse"]
    keras.backend.clear_session()
    return record


def plan(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any], int]]:
    """Every run, as (budget label, configuration name, its parameters, training seed): budget
    by budget, cheapest first, so an interrupted run has whole budgets to report."""
    configs = {DEFAULT: {}}
    for number, params in enumerate(draw_configs(args.configs, args.draw_seed), start=1):
        configs[f"c{number}"] = params
    runs = []
    for budget in args.budgets:
        for name, params in configs.items():
            seeds = seeds_of(args, budget.label, name)
            runs.extend((budget.label, name, params, seed) for seed in range(1, seeds + 1))
    return runs


def seeds_of(args: argparse.Namespace, budget: str, config: str) -> int:
    """Training seeds of one configuration at one budget: --seeds-at overrides both counts."""
    if budget in args.seeds_at:
        return args.seeds_at[budget]
    return args.default_seeds if config == DEFAULT else args.config_seeds


def parse_seeds_at(text: str) -> dict[str, int]:
    """'100000x10=1,10000x2=3' -> {'100000x10': 1, '10000x2': 3}."""
    pairs = [item.split("=") for item in text.split(",") if item.strip()]
    return {Budget.parse(b.strip()).label: int(n) for b, n in pairs}


def run_all(args: argparse.Namespace, saved: dict) -> dict:
    """Run what `saved` lacks, saving the whole record to --json after every run."""
    from dualtune.study_record import write_json_atomic

    evaluator = Evaluator(args.eval_sizes)
    saved.setdefault("machine", _common.machine_line())
    saved.setdefault("command", " ".join(sys.argv))
    runs = saved.setdefault("runs", [])
    done = {(r["budget"], r["config"], r["seed"]) for r in runs}
    budgets = {b.label: b for b in args.budgets}
    for label, name, params, seed in plan(args):
        if (label, name, seed) in done:
            continue
        record = train_once(budgets[label], params, seed, evaluator, args.fit_eval_rows)
        record.update(budget=label, config=name, params=params, seed=seed)
        record["fit_eval_rows"] = args.fit_eval_rows
        record["load_average"] = _common.load_average()
        runs.append(record)
        print(f"{label} {name} seed {seed}: {_summary(record)}", flush=True)
        if args.json:
            write_json_atomic(args.json, saved)
    return saved


def _summary(record: dict) -> str:
    if record["status"] != 0:
        return f"FAILED (exit {record['status']}) after {record['wall_s']:.1f} s"
    scores = " ".join(f"{k}={v:.5f}" for k, v in record["scores"].items())
    return f"{record['wall_s']:.1f} s, {scores}"


# ---------------------------------------------------------------- tables


def by_config(runs: list[dict], budget: str, size: str) -> dict[str, list[float]]:
    """Configuration -> its completed runs' scores at one budget and validation size."""
    groups: dict[str, list[float]] = {}
    for r in runs:
        if r["budget"] == budget and r["status"] == 0:
            groups.setdefault(r["config"], []).append(r["scores"][size])
    return groups


def budget_rows(runs: list[dict], budget: str, sizes: list[str], dear: str) -> list[list[Any]]:
    """One table row per validation size of one training budget; `dear`: the dearest budget,
    whose held-out (test) means stand for what a long run would say."""
    times = [r["wall_s"] for r in runs if r["budget"] == budget and r["status"] == 0]
    test, dear_test = by_config(runs, budget, "test"), by_config(runs, dear, "test")
    rows = []
    for size in sizes:
        groups = by_config(runs, budget, size)
        drawn = [name for name in groups if name != DEFAULT]
        guess = groups.get(DEFAULT, [])
        if len(drawn) < 2 or all(len(g) < 2 for g in groups.values()):
            continue  # no signal or no noise: one seed a configuration (a long reference run)
        sn = signal_noise([groups[n] for n in drawn], [guess])
        top = top_half([groups[n] for n in drawn])
        means = {n: statistics.fmean(groups[n]) for n in drawn}
        rho = spearman(list(means.values()), [statistics.fmean(test[n]) for n in means])
        both = [n for n in means if n in dear_test]
        rho_dear = (
            spearman([means[n] for n in both], [statistics.fmean(dear_test[n]) for n in both])
            if len(both) > 2
            else float("nan")
        )
        guess_sd = statistics.stdev(guess) if len(guess) > 1 else float("nan")
        rows.append(
            [budget, size, sn.configs, f"{statistics.fmean(guess):.5f}" if guess else "-",
             f"{guess_sd:.5f}", f"{sn.noise:.5f}", f"{sn.signal:.5f}", f"{sn.true_signal:.5f}",
             f"{sn.ratio:.1f}", f"{top.ratio:.1f}", f"{rho:.2f}", f"{rho_dear:.2f}",
             f"{statistics.fmean(times):.1f}"]
        )  # fmt: skip
    return rows


def top_half(drawn: list[list[float]]) -> SignalNoise:
    """Signal and noise among the better half of the configurations (lower mean first): the
    ones a study must tell apart near its best, where the slow learners no longer help."""
    ranked = sorted(drawn, key=statistics.fmean)
    return signal_noise(ranked[: max(2, (len(ranked) + 1) // 2)])


HEADERS = ["budget", "val rows", "configs", "guess mean", "guess sd", "noise", "signal",
           "signal-noise", "s/n", "s/n top half", "rho test", "rho dear", "s/trial"]  # fmt: skip


def config_table(runs: list[dict], budget: str, size: str) -> str:
    """Each configuration's parameters and its scores over seeds at one budget."""
    groups = by_config(runs, budget, size)
    test = by_config(runs, budget, "test")
    params = {r["config"]: r["params"] for r in runs}
    rows = []
    for name, values in sorted(groups.items(), key=lambda kv: statistics.fmean(kv[1])):
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        text = ", ".join(f"{k}={v}" for k, v in params[name].items()) or "(trainer defaults)"
        rows.append([name, len(values), f"{statistics.fmean(values):.5f}", f"{sd:.5f}",
                     f"{statistics.fmean(test[name]):.5f}", text])  # fmt: skip
    headers = ["config", "seeds", f"mean ({size})", "sd", "mean (test)", "parameters"]
    return _common.table(headers, rows)


def report(saved: dict, short_vs_long: bool = False) -> str:
    runs = saved.get("runs", [])
    budgets = list(dict.fromkeys(r["budget"] for r in runs))
    scored = next((r["scores"] for r in runs if r["status"] == 0), {})
    sizes = sorted((k for k in scored if k.isdigit()), key=int) + ["eval_all"] * bool(scored)
    rows = [row for b in budgets for row in budget_rows(runs, b, sizes, budgets[-1])]
    parts = [saved.get("machine", ""), saved.get("command", ""), _common.table(HEADERS, rows)]
    check = [abs(r["fit_val_rmse"] - r["scores"][str(_fit_rows(r))]) for r in runs
             if r["status"] == 0 and str(_fit_rows(r)) in r["scores"]]  # fmt: skip
    if check:
        parts.append(
            f"check: the trainer's own val_rmse vs this script's RMSE on the same rows "
            f"(--num_eval_examples): largest difference {max(check):.2e}"
        )
    failed = [r for r in runs if r["status"] != 0]
    parts.append(f"runs: {len(runs)}, failed: {len(failed)}")
    size = str(_fit_rows(next((r for r in runs if r["status"] == 0), {})))
    size = size if size in scored else str(FIT_EVAL_ROWS)
    for budget in budgets:
        parts.append(f"\n{budget}\n{config_table(runs, budget, size)}")
    if short_vs_long and len(budgets) > 1:
        parts.append("\n" + short_vs_long_table(runs, budgets, size))
    return "\n".join(parts)


def bootstrap_spearman(
    a: list[float], b: list[float], draws: int = 2000, seed: int = 0, level: float = 0.9
) -> tuple[float, float]:
    """A percentile bootstrap interval of spearman(a, b), resampling the pairs (configurations)
    with replacement; resamples whose ranks are all tied (no correlation defined) are skipped."""
    import random

    rng = random.Random(seed)
    values = []
    for _ in range(draws):
        picks = [rng.randrange(len(a)) for _ in a]
        rho = spearman([a[i] for i in picks], [b[i] for i in picks])
        if not math.isnan(rho):
            values.append(rho)
    if not values:
        raise ValueError("no resample has a defined rank correlation")
    values.sort()
    tail = (1 - level) / 2
    low = values[int(tail * (len(values) - 1))]
    high = values[int(round((1 - tail) * (len(values) - 1)))]
    return low, high


def seed_scores(runs: list[dict], budget: str, size: str) -> dict[int, dict[str, float]]:
    """Training seed -> configuration -> its score: what a study trying each configuration once,
    with that seed, would see."""
    out: dict[int, dict[str, float]] = {}
    for r in runs:
        if r["budget"] == budget and r["status"] == 0:
            out.setdefault(r["seed"], {})[r["config"]] = r["scores"][size]
    return out


def short_vs_long_row(runs: list[dict], short: str, dear: str, size: str) -> list[Any] | None:
    """Does a short trial predict a long one: Spearman of every configuration's (the guess
    included) mean on the validation sample at `short` against its held-out test mean at
    `dear`, with a bootstrap interval over configurations, the same per single training seed
    (one trial each, as a study runs), and among the better half by the short means."""
    means = {n: statistics.fmean(v) for n, v in by_config(runs, short, size).items()}
    long = {n: statistics.fmean(v) for n, v in by_config(runs, dear, "test").items()}
    names = [n for n in means if n in long]
    if len(names) < 3:
        return None
    a, b = [means[n] for n in names], [long[n] for n in names]
    low, high = bootstrap_spearman(a, b)
    per_seed = [
        spearman([got[n] for n in names if n in got], [long[n] for n in names if n in got])
        for got in seed_scores(runs, short, size).values()
        if sum(n in got for n in names) >= 3
    ]
    top = sorted(names, key=means.get)[: max(3, (len(names) + 1) // 2)]
    rho_top = spearman([means[n] for n in top], [long[n] for n in top])
    long_noise = _long_noise(runs, dear)
    return [short, dear, size, len(names), f"{spearman(a, b):.2f}", f"{low:.2f}..{high:.2f}",
            f"{min(per_seed):.2f}..{max(per_seed):.2f}" if per_seed else "-",
            f"{rho_top:.2f} ({len(top)})", f"{statistics.stdev(b):.5f}", long_noise]  # fmt: skip


def _long_noise(runs: list[dict], dear: str) -> str:
    groups = [g for g in by_config(runs, dear, "test").values() if len(g) > 1]
    return f"{pooled_sd(groups):.5f}" if groups else "-"


SHORT_LONG_HEADERS = ["short", "long", "val rows", "configs", "rho", "90% bootstrap",
                      "rho per seed", "rho top half", "long sd", "long noise"]  # fmt: skip


def short_vs_long_table(runs: list[dict], budgets: list[str], size: str) -> str:
    """short_vs_long_row for every budget but the dearest, whose test means are the reference."""
    rows = [short_vs_long_row(runs, b, budgets[-1], size) for b in budgets[:-1]]
    title = "short against long: validation-sample means vs the dearest budget's test means"
    return title + "\n" + _common.table(SHORT_LONG_HEADERS, [r for r in rows if r])


def _fit_rows(record: dict) -> int:
    return record.get("fit_eval_rows", FIT_EVAL_ROWS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="10000x2,20000x3,40000x5,100000x5")
    parser.add_argument("--eval-sizes", default="1000,5000,20000")
    parser.add_argument("--configs", type=int, default=8, help="configurations drawn")
    parser.add_argument("--draw-seed", type=int, default=0, help="which configurations")
    parser.add_argument("--default-seeds", type=int, default=6, help="training seeds, guess")
    parser.add_argument("--config-seeds", type=int, default=3, help="training seeds, drawn")
    parser.add_argument(
        "--fit-eval-rows", type=int, default=FIT_EVAL_ROWS, help="the trainer's validation rows"
    )
    parser.add_argument(
        "--seeds-at", default="", help="seeds for every configuration at a budget: 100000x10=1"
    )
    parser.add_argument(
        "--short-vs-long",
        action="store_true",
        help="also rank every budget's validation means against the dearest budget's test means",
    )
    parser.add_argument("--json", type=Path, help="save every run here as it ends")
    parser.add_argument("--resume", action="store_true", help="keep --json's runs, run the rest")
    parser.add_argument("--from-json", type=Path, help="only print the tables of a saved run")
    args = parser.parse_args()
    if args.from_json:
        print(report(json.loads(args.from_json.read_text()), args.short_vs_long))
        return
    args.seeds_at = parse_seeds_at(args.seeds_at)
    args.budgets = [Budget.parse(b) for b in args.budgets.split(",")]
    args.eval_sizes = [int(n) for n in args.eval_sizes.split(",")]
    saved = json.loads(args.json.read_text()) if args.resume and args.json.exists() else {}
    print(report(run_all(args, saved), args.short_vs_long))


if __name__ == "__main__":
    main()
