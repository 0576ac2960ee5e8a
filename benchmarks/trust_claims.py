"""Trust: does a study's claimed improvement over the guess hold on held-out data?

For each study seed it runs the flights study at its default budget as `make tune` does
(`python -m dualtune.cli tune --backend local --seed S`, search_spaces/flights.yaml unchanged:
10 trials, 2 at a time, the tuning args, the baseline and the confirmation), into a private
MLflow store and study folder under --out. It then reads what the study claims, through the
names dualtune itself writes them with (dualtune.mlflow_layout: the study run's WINNER, NOISE,
IMPROVEMENT tags; its trial runs' TRIAL_ID and parameters; study.json's verdict and best value):
- the winner (a trial, or `baseline`: the guess) and its claimed gain over the guess (%);
- the noise (the baseline runs' sd over training seeds) and the guess's mean;
- the best trial's tuning score against the guess (the descriptive line, flattered by choosing
  the best of ten noisy scores).
A study without a verdict (dualtune before issue 16's baseline) gets one computed here, and the
report says so: the guess run --own-baseline times at the tuning budget (seeds 1..N), the
claim is the best trial against its mean.

Then every configuration a claim names (the guess, each winner, each best trial) is trained
again with the real trainer (benchmarks/signal_noise.train_once, in this process) at fresh
training seeds (--fresh-seeds; trials use the trainer's default seed 42, the baseline and
confirmations SHA-derived ones far above these) and scored on HELD-OUT data: the whole test
split (2 of the 3 splits the study never saw: it validates on a sample of eval). Budgets:
the tuning budget (the claim as made: same training, unseen rows and seeds) and, with
--finalize-seeds, the finalize budget (what `finalize` would deliver).

Per study it prints the claim, the re-measured improvement (guess mean - winner mean over the
guess mean, %, positive = better) with its standard error from the sd over seeds, and whether
the claim held (see `held`). Every study and every training run is saved to --json as soon as
it ends; --resume skips what is there, --from-json only prints.

    .venv/bin/python benchmarks/trust_claims.py --json trust_claims.json
    .venv/bin/python benchmarks/trust_claims.py --study-seeds 1 --fresh-seeds 2 \
        --max-trials 2 --json /tmp/t.json        # a smoke run (not the default budget)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402 - benchmarks run as scripts from the repository root
import signal_noise as sn  # noqa: E402

GUESS = "baseline"  # the winner id of a study whose guess won (dualtune/verdict.py's GUESS)
FRESH_SEED_BASE = 100  # fresh seeds 101, 102, ...: neither 42 (trials) nor SHA-derived ones


# ---------------------------------------------------------------- arithmetic (tested)


@dataclass(frozen=True)
class Gain:
    """A configuration's runs against the guess's runs, minimised metric: positive = better."""

    pct: float  # (guess mean - mean) / guess mean, in %
    se_pct: float  # its standard error from the sd over seeds: sqrt(s1^2/n1 + s2^2/n2) / guess

    @property
    def interval(self) -> tuple[float, float]:
        return self.pct - 2 * self.se_pct, self.pct + 2 * self.se_pct


def gain(values: list[float], guess: list[float]) -> Gain:
    """The relative gain of `values` over `guess` (both over training seeds), with its noise."""
    if len(values) < 2 or len(guess) < 2:
        raise ValueError("a gain with its noise needs at least two runs of each")
    g = statistics.fmean(guess)
    diff = g - statistics.fmean(values)
    se = math.sqrt(
        statistics.variance(values) / len(values) + statistics.variance(guess) / len(guess)
    )
    return Gain(100 * diff / g, 100 * se / g)


def held(claimed_pct: float, guess_won: bool, remeasured: Gain) -> str:
    """Did the claim hold on held-out data? A study whose guess won claims nothing beats it:
    held unless the re-measured best trial beats the guess beyond 2 standard errors. A trial
    winner claims a gain: held when the re-measured gain is positive beyond 2 standard errors
    ('held'), positive but within noise ('within noise'), else 'not held'; '(size off)' when
    the claimed size lies outside the re-measured +-2 se."""
    low, high = remeasured.interval
    if guess_won:
        return "held" if low <= 0 else "not held (a trial beats the guess)"
    word = "held" if low > 0 else "within noise" if remeasured.pct > 0 else "not held"
    return word if low <= claimed_pct <= high else f"{word} (size off)"


def config_key(params: dict[str, Any]) -> str:
    """One name per parameter set, whichever study found it: its sorted JSON ('{}': guess)."""
    return json.dumps(params, sort_keys=True)


# ---------------------------------------------------------------- the studies


@dataclass(frozen=True)
class Claim:
    """What one study says, read back from MLflow and study.json."""

    study: str
    study_seed: int
    source: str  # "verdict" (the study's own) or "own baseline" (computed here)
    winner: str  # a trial id or GUESS
    winner_params: dict[str, Any]
    improvement_pct: float  # claimed, winner vs guess (0 when the guess won)
    noise: float | None
    guess_mean: float
    best_trial: str
    best_params: dict[str, Any]
    best_value: float
    words: str
    confirmed: str = ""  # the best trial by its confirmed mean ("" without confirmations)
    confirmed_params: dict[str, Any] | None = None
    confirmed_mean: float | None = None

    @property
    def best_pct(self) -> float:
        return 100 * (self.guess_mean - self.best_value) / self.guess_mean


def run_study(seed: int, args: argparse.Namespace) -> tuple[str, float]:
    """`dualtune tune --backend local --seed SEED` on flights.yaml; (study name, wall s)."""
    import time

    name = f"trust-s{seed}"
    argv = [sys.executable, "-m", "dualtune.cli", "tune", "--backend", "local",
            "--seed", str(seed), "--study", name, "--workdir", str(args.out / "studies"),
            "--tracking-uri", tracking_uri(args)]  # fmt: skip
    if args.max_trials:
        argv += ["--max-trials", str(args.max_trials)]
    if args.parallel_trials:
        argv += ["--parallel-trials", str(args.parallel_trials)]
    start = time.perf_counter()
    log = (args.out / f"{name}.log").open("w")
    status = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if status != 0:
        raise RuntimeError(f"study {name} exited {status}: see {args.out / f'{name}.log'}")
    return name, time.perf_counter() - start


def tracking_uri(args: argparse.Namespace) -> str:
    return f"sqlite:///{(args.out / 'mlflow.db').resolve()}"


def read_claim(
    name: str, seed: int, args: argparse.Namespace, evaluator: Any, saved: dict
) -> Claim:
    """The study's claim through dualtune's own layout; its own baseline when it has none."""
    from mlflow.tracking import MlflowClient

    from dualtune import mlflow_layout as layout

    client = MlflowClient(tracking_uri(args))
    study_run = layout.find_study(client, name)
    space = _common.flights_space()
    params, scores = {}, {}
    for run in layout.trial_runs(client, study_run):
        trial = run.data.tags[layout.TRIAL_ID]
        params[trial] = space.cast_values({k: _typed(v) for k, v in run.data.params.items()})
        final = run.data.tags.get(layout.FINAL_VALUE)
        if final is not None and math.isfinite(float(final)):
            scores[trial] = float(final)
    best = min(scores, key=scores.get)
    tags = study_run.data.tags
    record = json.loads((args.out / "studies" / name / "study.json").read_text())
    verdict = record.get("verdict")
    if layout.WINNER in tags and verdict:
        winner = tags[layout.WINNER]
        confirmed = confirmed_means(record.get("executions") or {})
        top = min(confirmed, key=confirmed.get) if confirmed else ""
        return Claim(
            name, seed, "verdict", winner, {} if winner == GUESS else params[winner],
            float(tags.get(layout.IMPROVEMENT, "nan")), _float(tags.get(layout.NOISE)),
            float(verdict["guess_mean"]), best, params[best], scores[best], verdict["words"],
            top, params.get(top), confirmed.get(top),
        )  # fmt: skip
    guess = own_baseline(args, evaluator, saved)
    mean = statistics.fmean(guess)
    winner = best if scores[best] < mean else GUESS
    return Claim(
        name, seed, "own baseline", winner, params[best] if winner != GUESS else {},
        100 * (mean - scores[best]) / mean if winner != GUESS else 0.0, statistics.stdev(guess),
        mean, best, params[best], scores[best], "no verdict recorded: best trial vs own baseline",
    )  # fmt: skip


def confirmed_means(executions: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Trial id -> the mean of its completed confirmation runs (study.json's executions)."""
    from dualtune.mlflow_layout import ROLE_CONFIRMATION

    values: dict[str, list[float]] = {}
    for run in executions.values():
        final = run.get("final")
        if (
            run.get("role") == ROLE_CONFIRMATION
            and run.get("status") == "COMPLETED"
            and (final is not None and math.isfinite(final))
        ):
            values.setdefault(str(run["trial_id"]), []).append(float(final))
    return {trial: statistics.fmean(v) for trial, v in values.items()}


def _typed(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)


def own_baseline(args: argparse.Namespace, evaluator: Any, saved: dict) -> list[float]:
    """The guess at the tuning budget, seeds 1..--own-baseline, on the validation sample."""
    budget = tuning_budget()
    size = str(args.fit_eval_rows)
    runs = [train(args, evaluator, saved, "own-baseline", budget, {}, s)
            for s in range(1, args.own_baseline + 1)]  # fmt: skip
    return [r["scores"][size] for r in runs if r["status"] == 0]


# ---------------------------------------------------------------- re-measuring


def tuning_budget() -> sn.Budget:
    return _budget_of(_common.flights_space().trainer.tuning_args)


def finalize_budget() -> sn.Budget:
    return _budget_of(_common.flights_space().trainer.finalize_args)


def _budget_of(args: tuple[str, ...]) -> sn.Budget:
    flags = dict(a.lstrip("-").split("=", 1) for a in args if "=" in a)
    return sn.Budget(int(flags["num_examples"]), int(flags["num_epochs"]))


def train(
    args: argparse.Namespace, evaluator: Any, saved: dict, kind: str, budget: sn.Budget,
    params: dict[str, Any], seed: int,
) -> dict:  # fmt: skip
    """One training run (kept in `saved`, so a resumed run skips it), saved to --json."""
    from dualtune.study_record import write_json_atomic

    runs = saved.setdefault("runs", [])
    key = [kind, budget.label, config_key(params), seed]
    for r in runs:
        if r["key"] == key:
            return r
    record = sn.train_once(budget, params, seed, evaluator, args.fit_eval_rows)
    record.update(key=key, params=params, seed=seed, load_average=_common.load_average())
    runs.append(record)
    print(f"{kind} {budget.label} {config_key(params)} seed {seed}: "
          f"{sn._summary(record)}", flush=True)  # fmt: skip
    if args.json:
        write_json_atomic(args.json, saved)
    return record


def remeasure(args: argparse.Namespace, evaluator: Any, saved: dict) -> None:
    """Every configuration a claim names, at fresh seeds, per budget: the guess first."""
    budgets = [tuning_budget()] + [finalize_budget()] * bool(args.finalize_seeds)
    for budget in budgets:
        count = args.fresh_seeds if budget == budgets[0] else args.finalize_seeds
        configs = [{}]
        for claim in saved["claims"]:
            wanted = [claim["winner_params"]]
            if budget == budgets[0] or args.finalize_all:
                wanted += [claim["best_params"], claim.get("confirmed_params")]
            configs += [p for p in wanted if p is not None and p not in configs]
        for seed in range(FRESH_SEED_BASE + 1, FRESH_SEED_BASE + count + 1):
            for params in configs:  # seed by seed: a partial run has every config once
                train(args, evaluator, saved, "fresh", budget, params, seed)


def test_scores(saved: dict, budget: str, params: dict[str, Any]) -> list[float]:
    key = config_key(params)
    return [r["scores"]["test"] for r in saved.get("runs", [])
            if r["key"][:3] == ["fresh", budget, key] and r["status"] == 0]  # fmt: skip


# ---------------------------------------------------------------- report


def claim_rows(saved: dict, budget: str) -> list[list[Any]]:
    """One row per study: its claims, re-measured on the test split at `budget`."""
    guess = test_scores(saved, budget, {})
    rows = []
    for c in saved.get("claims", []):
        claim = Claim(**c)
        best = _gain_text(test_scores(saved, budget, claim.best_params), guess)
        won = claim.winner == GUESS
        win_runs = test_scores(saved, budget, claim.winner_params)
        win = _gain_text(win_runs, guess) if not won else "(the guess)"
        rivals = [test_scores(saved, budget, claim.best_params)]
        conf, conf_text = "-", "-"
        if claim.confirmed_params is not None:
            rivals.append(test_scores(saved, budget, claim.confirmed_params))
            conf = f"{claim.confirmed} {claim.confirmed_mean:.5f}"
            conf_text = _gain_text(rivals[-1], guess)
        check = _held_text(claim, won, win_runs, rivals, guess)
        noise = "-" if claim.noise is None else f"{claim.noise:.5f}"
        rows.append([claim.study_seed, claim.source, f"{claim.guess_mean:.5f}", noise,
                     f"{claim.best_trial} {claim.best_value:.5f}", f"{claim.best_pct:+.2f}%",
                     best, conf, conf_text, claim.winner, f"{claim.improvement_pct:+.2f}%", win,
                     check])  # fmt: skip
    return rows


def _gain_text(values: list[float], guess: list[float]) -> str:
    try:
        g = gain(values, guess)
    except ValueError:
        return "-"
    return f"{g.pct:+.2f}% +- {g.se_pct:.2f}"


def _held_text(
    claim: Claim, won: bool, win_runs: list[float], rivals: list[list[float]], guess: list[float]
) -> str:
    """A trial winner: its own gain. The guess as winner: its strongest rival (the best trial
    by tuning score, the best by confirmed mean), the one with the highest lower bound."""
    try:
        if not won:
            return held(claim.improvement_pct, False, gain(win_runs, guess))
        gains = [gain(r, guess) for r in rivals if len(r) > 1]
        return held(0.0, True, max(gains, key=lambda g: g.interval[0])) if gains else "-"
    except ValueError:
        return "-"


CLAIM_HEADERS = ["study seed", "claim from", "guess mean", "noise", "best trial (val)",
                 "best vs guess", "re-measured", "confirmed best", "re-measured", "winner",
                 "claimed", "re-measured", "held"]  # fmt: skip


def report(saved: dict) -> str:
    parts = [saved.get("machine", ""), saved.get("command", "")]
    for s in saved.get("studies", []):
        parts.append(f"study {s['name']} (seed {s['seed']}): {s['wall_s']:.0f} s")
    budgets = list(dict.fromkeys(r["key"][1] for r in saved.get("runs", [])
                                 if r["key"][0] == "fresh"))  # fmt: skip
    for budget in budgets:
        guess = test_scores(saved, budget, {})
        sd = statistics.stdev(guess) if len(guess) > 1 else float("nan")
        parts.append(f"\nre-measured at {budget} on the test split; the guess: "
                     f"{statistics.fmean(guess):.5f} sd {sd:.5f} ({len(guess)} seeds)")  # fmt: skip
        parts.append(_common.table(CLAIM_HEADERS, claim_rows(saved, budget)))
    for c in saved.get("claims", []):
        parts.append(f"seed {c['study_seed']}: {c['words']}")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study-seeds", default="1,2,3,4,5")
    parser.add_argument("--fresh-seeds", type=int, default=3, help="at the tuning budget")
    parser.add_argument("--finalize-seeds", type=int, default=0, help="at the finalize budget")
    parser.add_argument(
        "--finalize-all", action="store_true", help="the best trials too at the finalize budget"
    )
    parser.add_argument("--own-baseline", type=int, default=3, help="guess runs, no verdict")
    parser.add_argument("--max-trials", type=int, help="(smoke runs only) the study's trials")
    parser.add_argument("--parallel-trials", type=int, help="(smoke runs only) at once")
    parser.add_argument("--fit-eval-rows", type=int, default=20000, help="as tuning_args")
    parser.add_argument("--out", type=Path, default=Path("trust-claims"), help="studies here")
    parser.add_argument("--json", type=Path, help="save every study and run here as it ends")
    parser.add_argument("--resume", action="store_true", help="keep --json's runs, do the rest")
    parser.add_argument("--from-json", type=Path, help="only print the tables of a saved run")
    args = parser.parse_args()
    if args.from_json:
        print(report(json.loads(args.from_json.read_text())))
        return
    saved = json.loads(args.json.read_text()) if args.resume and args.json.exists() else {}
    print(report(run_all(args, saved)))


def run_all(args: argparse.Namespace, saved: dict) -> dict:
    from dualtune.study_record import write_json_atomic

    args.out.mkdir(parents=True, exist_ok=True)
    saved.setdefault("machine", _common.machine_line())
    saved.setdefault("command", " ".join(sys.argv))
    evaluator = sn.Evaluator([args.fit_eval_rows])
    studies, claims = saved.setdefault("studies", []), saved.setdefault("claims", [])
    for seed in [int(s) for s in args.study_seeds.split(",")]:
        if any(c["study_seed"] == seed for c in claims):
            continue
        name, wall = run_study(seed, args)
        studies.append({"name": name, "seed": seed, "wall_s": wall,
                        "load_average": _common.load_average()})  # fmt: skip
        claims.append(asdict(read_claim(name, seed, args, evaluator, saved)))
        print(f"study {name}: {claims[-1]['words']}", flush=True)
        if args.json:
            write_json_atomic(args.json, saved)
    remeasure(args, evaluator, saved)
    return saved


if __name__ == "__main__":
    main()
