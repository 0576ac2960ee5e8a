"""Orchestration overhead: dualtune's local backend (a process per trial) vs Keras Tuner in-process.

One study run three ways in this process, one after the other: the flights space, a RandomSearch
oracle with the same seed and number of trials (so all three train the SAME parameter sets, which
the script checks), every trial a tiny run (--num_examples, --num_eval_examples, --num_epochs,
--skip_full_eval):
- keras-tuner: kt.RandomSearch over the same HyperParameters (search_spaces' compiler), with a
  HyperModel that builds trainer.model.build_model and fits it on trainer.data's pipelines; the
  CSVs are read once for the whole search, as an in-process user would;
- dualtune prewarm: LocalBackend() (the default: the next trial's process imports while this one
  trains), parallel_trials=1;
- dualtune cold: LocalBackend(prewarm=False), parallel_trials=1;
- dualtune prewarm+tf (opt-in what-if, --modes): prewarm whose warm processes also import
  TensorFlow and the trainer's lazily imported modules, as a fixed prewarm would.

Time spent training, measured the same way for all three: a trial's epochs times the mean gap
between its consecutive end-of-epoch reports (dualtune: the hypertune timestamps the trainer
writes after its per-epoch checkpoint; Keras Tuner: a callback placed after Keras Tuner's own
per-epoch callbacks). The first epoch's extra (tracing, the eval cache) is therefore overhead.
Overhead per trial = (study wall time - time spent training) / trials. As the trials are the same,
the wall time difference per trial is printed too: it needs no training estimate at all.

    .venv/bin/python benchmarks/overhead.py [--trials 6] [--rounds 1] [--num_epochs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402
import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402

from search_spaces.keras_tuner_compiler import to_hyperparameters  # noqa: E402
from search_spaces.model import Budget  # noqa: E402
from trainer import data  # noqa: E402
from trainer.flags import hidden_units  # noqa: E402
from trainer.model import ModelParams, build_model  # noqa: E402

TRAINER_SEED = 42  # the trainer's --seed default
EVAL_BATCH = 1024  # the trainer's --eval_batch_size default
KT = "keras-tuner"
PREWARM = "dualtune prewarm"
COLD = "dualtune cold"
# What-if (opt-in): prewarm that also preloads what trainer.task imports lazily. The backend
# preloads only the trainer module itself, and trainer.task imports TensorFlow inside main.
PREWARM_HEAVY = "dualtune prewarm+tf"
HEAVY_MODULES = ("tensorflow", "keras", "hypertune", "trainer.data", "trainer.callbacks")
MODES = (KT, PREWARM, COLD, PREWARM_HEAVY)


class EpochClock(keras.callbacks.Callback):
    """Records when each epoch ended (time.time(), as cloudml-hypertune stamps its reports)."""

    def __init__(self, record: _common.TrialRecord) -> None:
        super().__init__()
        self.record = record

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.record.steps.append(epoch + 1)
        self.record.values.append(float((logs or {}).get("val_rmse", float("nan"))))
        self.record.times.append(time.time())


class FlightsHyperModel(kt.HyperModel):
    """trainer.task's model and input pipeline, in process: data read once, a model per trial."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        from trainer.embedded import ensure_data

        paths = ensure_data()
        self.args = args
        self.frame = data.read_csv(str(paths["train"]))
        self.stats = data.compute_stats(self.frame)
        self.eval_frame = data.read_csv(str(paths["eval"]), limit=args.num_eval_examples)
        self.records: list[_common.TrialRecord] = []

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        keras.utils.set_random_seed(TRAINER_SEED)
        params = ModelParams(
            hp.get("nbuckets"),
            hp.get("nembeds"),
            hidden_units(hp.get("dnn_hidden_units")),
            hp.get("learning_rate"),
        )
        return build_model(params, self.stats)

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, **kwargs):
        batch_size = hp.get("train_batch_size")
        record = _common.TrialRecord(str(len(self.records)), dict(hp.values))
        self.records.append(record)
        callbacks = [*kwargs.get("callbacks", []), EpochClock(record)]
        return model.fit(
            data.train_dataset(self.frame, batch_size, TRAINER_SEED),
            epochs=self.args.num_epochs,
            steps_per_epoch=self.args.num_examples // batch_size,
            validation_data=data.eval_dataset(self.eval_frame, EVAL_BATCH),
            shuffle=False,
            callbacks=callbacks,
            verbose=0,
        )


class RandomSearch(kt.RandomSearch):
    """kt.RandomSearch, minus one import: Keras Tuner 1.4.8 imports tensorboard in every trial
    (Tuner._configure_tensorboard_dir) to patch TensorBoard callbacks; TensorFlow 2.21 no
    longer installs tensorboard, so every trial would fail. We pass no TensorBoard callback, so
    the method has nothing to do."""

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        return None


def run_keras_tuner(args: argparse.Namespace, space, workdir: Path) -> _common.StudyResult:
    """The same study as Keras Tuner runs it in process; wall time includes reading the data."""
    start = time.perf_counter()
    hypermodel = FlightsHyperModel(args)
    tuner = RandomSearch(
        hypermodel,
        objective=kt.Objective(space.metric.tag, "min"),
        max_trials=args.trials,
        seed=args.seed,
        hyperparameters=to_hyperparameters(space),
        tune_new_entries=False,
        allow_new_entries=False,
        directory=str(workdir),
        project_name="kt",
        overwrite=True,
    )
    tuner.search(verbose=0)
    wall = time.perf_counter() - start
    for record in hypermodel.records:
        record.status = "COMPLETED" if record.steps else "FAILED"
    best = tuner.oracle.get_best_trials(1)
    value = best[0].score if best else None
    return _common.StudyResult(KT, wall, hypermodel.records, "COMPLETED", value)


@contextlib.contextmanager
def preloading(modules: tuple[str, ...]) -> Iterator[None]:
    """Make every warm process also import `modules` (the what-if mode only)."""
    from backends.local.process import WarmProcess

    original = WarmProcess.__init__

    def init(self, python: str, preload: tuple[str, ...], base_env: dict[str, str]) -> None:
        original(self, python, (*preload, *modules), base_env)

    WarmProcess.__init__ = init
    try:
        yield
    finally:
        WarmProcess.__init__ = original


def run_dualtune(args: argparse.Namespace, space, workdir: Path, mode: str):
    extra = (
        "--skip_full_eval",
        f"--num_examples={args.num_examples}",
        f"--num_eval_examples={args.num_eval_examples}",
        f"--num_epochs={args.num_epochs}",
    )
    heavy = HEAVY_MODULES if mode == PREWARM_HEAVY else ()
    with preloading(heavy):
        return _common.run_local_study(
            mode, space, workdir, extra, prewarm=mode != COLD, seed=args.seed
        )


def run_round(args: argparse.Namespace, space, modes: list[str], root: Path) -> dict:
    results = {}
    for mode in modes:
        workdir = Path(tempfile.mkdtemp(prefix=mode.replace(" ", "-") + "-", dir=root))
        if mode == KT:
            results[mode] = run_keras_tuner(args, space, workdir)
        else:
            results[mode] = run_dualtune(args, space, workdir, mode)
        result = results[mode]
        print(f"  {mode}: {result.wall_s:.1f} s, status {result.status}", flush=True)
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


def summarise(runs: list[dict], modes: list[str], target_s: float) -> None:
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
    print()
    print(_common.table(headers, rows))
    if base is not None and PREWARM in stats:
        extra = stats[PREWARM]["overhead"] - base["overhead"]
        met = "MET" if extra <= target_s else "NOT MET"
        print(
            f"\ntarget: process isolation (prewarm on) costs at most {target_s:g} s/trial over "
            f"Keras Tuner in-process: {met} ({extra:+.2f} s/trial)"
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
        help=f"comma-separated, from: {', '.join(MODES)} (the last is a what-if)",
    )
    parser.add_argument("--num_examples", type=int, default=2000)
    parser.add_argument("--num_eval_examples", type=int, default=1000)
    parser.add_argument(
        "--num_epochs",
        type=int,
        default=3,
        help="at least 2: training time is measured between epoch reports",
    )
    parser.add_argument("--seed", type=int, default=1, help="oracle seed")
    parser.add_argument("--target_s", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the study directories")
    args = parser.parse_args()
    if args.num_epochs < 2:
        parser.error("--num_epochs must be at least 2")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {unknown[0]!r}; choose from {', '.join(MODES)}")
    return args


def main() -> None:
    args = parse_args()
    modes = args.modes
    space = _common.flights_space(
        algorithm="random", budget=Budget(args.trials, 1, max_failed_trials=args.trials)
    )
    print(_common.machine_line())
    print(
        f"{args.trials} trials x {args.rounds} round(s): --num_examples={args.num_examples} "
        f"--num_eval_examples={args.num_eval_examples} --num_epochs={args.num_epochs} "
        f"--skip_full_eval; random search, seed {args.seed}, parallel_trials=1"
    )
    root = Path(tempfile.mkdtemp(prefix="dualtune-overhead-"))
    runs = []
    try:
        for number in range(args.rounds):
            order = modes if number % 2 == 0 else modes[::-1]
            print(f"round {number + 1}: {', '.join(order)}", flush=True)
            runs.append(run_round(args, space, order, root))
            if not same_parameters(runs[-1]):
                print("  WARNING: the modes did not train the same parameter sets")
    finally:
        if args.keep:
            print(f"study directories kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load average after: {_common.load_average()}")
    summarise(runs, modes, args.target_s)


if __name__ == "__main__":
    main()
