"""Re-measure one study's winning trial: does its claim over the guess hold on held-out data?

trust_claims.py re-measures the studies it runs itself; this re-measures any study already
recorded (a `make tune` of yours, say). It reads the trial's parameters from the study's MLflow
store (through dualtune's own names: mlflow_layout), trains that configuration and the guess
(the trainer's defaults) again with the real trainer at fresh training seeds, at the space's
tuning budget, and scores both on the whole test split, which no study sees. It prints both
means and the trial's gain over the guess (%, positive = better) +- its standard error.

    .venv/bin/python benchmarks/remeasure_trial.py --store sqlite:///ABS/mlruns/mlflow.db \
        --study flights-20261208-012129 --trial 08 --seeds 101,102,103
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import signal_noise as sn  # noqa: E402
import trust_claims as tc  # noqa: E402


def trial_params(store: str, study: str, trial: str) -> dict:
    """The trial's parameters as the study recorded them, typed."""
    from dualtune import mlflow_layout as layout
    from dualtune.tracking import client

    mlflow_client = client(store)
    for run in layout.trial_runs(mlflow_client, layout.find_study(mlflow_client, study)):
        if run.data.tags.get(layout.TRIAL_ID) == trial:
            return {k: tc._typed(v) for k, v in run.data.params.items()}
    raise SystemExit(f"--trial: study {study} has no trial {trial!r} in {store}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="the study's MLflow tracking URI")
    parser.add_argument("--study", required=True)
    parser.add_argument("--trial", required=True, help="the trial id, e.g. 08")
    parser.add_argument("--seeds", default="101,102,103", help="fresh training seeds")
    args = parser.parse_args()
    params = trial_params(args.store, args.study, args.trial)
    seeds = [int(s) for s in args.seeds.split(",")]
    budget = tc.tuning_budget()
    evaluator = sn.Evaluator([20000])
    scores: dict[str, list[float]] = {"guess": [], f"trial {args.trial}": []}
    for seed in seeds:
        for name, config in (("guess", {}), (f"trial {args.trial}", params)):
            record = sn.train_once(budget, config, seed, evaluator, 20000)
            if record["status"] == 0:
                scores[name].append(record["scores"]["test"])
            print(f"{name} {budget.label} seed {seed}: {sn._summary(record)}", flush=True)
    guess, trial = scores["guess"], scores[f"trial {args.trial}"]
    found = tc.gain(trial, guess)
    print(f"trial {args.trial} {params}")
    means = f"guess {sum(guess) / len(guess):.5f}, trial {sum(trial) / len(trial):.5f}"
    print(f"test split, {budget.label}, seeds {args.seeds}: {means}: "
          f"gain {found.pct:+.2f}% +- {found.se_pct:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
