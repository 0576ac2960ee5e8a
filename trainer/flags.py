"""The trainer's command line: every hyperparameter is a flag whose default is the initial guess.

Vertex formats integer parameters as floats ("--nbuckets=7.0"), so integer flags accept an
integral float and reject anything else with an argparse error naming the flag. Unknown flags
(abbreviations included) are an error, so an orchestrator learns at once that it passed a wrong
parameter name.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence

EXPORT_FORMATS = ("keras", "saved_model")


def integer(minimum: int) -> Callable[[str], int]:
    """An argparse type for integers >= minimum that also accepts "7.0" (Vertex's formatting)."""

    def parse(text: str) -> int:
        try:
            number = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not math.isfinite(number) or not number.is_integer():
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is below the minimum {minimum}")
        return int(number)

    return parse


def positive_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return number


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def hidden_units(text: str) -> tuple[int, ...]:
    """ "64,32" -> (64, 32): the sizes of the deep part's hidden layers."""
    try:
        units = tuple(integer(1)(part) for part in text.split(",") if part.strip())
    except argparse.ArgumentTypeError:
        units = ()
    if not units:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of layer sizes")
    return units


def export_formats(text: str) -> tuple[str, ...]:
    formats = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(
            f"{text!r}: choose a comma-separated subset of {', '.join(EXPORT_FORMATS)}"
        )
    return formats


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default, except None: those flags explain their fallback themselves."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.task",
        description="Train the flights on-time wide-and-deep model (the Vertex trial contract).",
        formatter_class=_HelpFormatter,
        allow_abbrev=False,  # --nbucket must not silently mean --nbuckets
    )
    _add_hyperparameters(parser.add_argument_group("hyperparameters"))
    _add_budget(parser.add_argument_group("budget and reproducibility"))
    _add_io(parser.add_argument_group("data and outputs"))
    return parser


def _add_hyperparameters(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--train_batch_size", type=integer(1), default=64, help="batch size")
    group.add_argument(
        "--nbuckets", type=integer(2), default=5, help="lat/lon buckets over the data's range"
    )
    group.add_argument(
        "--nembeds", type=integer(1), default=3, help="embedding size of each sparse feature"
    )
    group.add_argument(
        "--dnn_hidden_units", type=hidden_units, default="64,32", help="hidden layer sizes"
    )
    group.add_argument(
        "--learning_rate", type=positive_float, default=0.001, help="Adam's learning rate"
    )


def _add_budget(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--num_epochs", type=integer(1), default=10, help="epochs to train")
    group.add_argument(
        "--num_examples",
        type=integer(1),
        default=100000,
        help="examples per (virtual) epoch: steps per epoch = num_examples // train_batch_size",
    )
    group.add_argument(
        "--num_eval_examples",
        type=integer(1),
        default=10000,
        help="rows of the validation sample evaluated each epoch: a fixed random sample of the "
        "eval data, drawn with --eval_sample_seed (all rows if it has no more)",
    )
    group.add_argument(
        "--eval_sample_seed",
        type=integer(0),
        default=0,
        help="which rows the validation sample holds; independent of --seed, so every trial "
        "validates on the same rows (docs/data.md)",
    )
    group.add_argument(
        "--eval_batch_size",
        type=integer(1),
        default=1024,
        help="batch size for evaluation only (does not change the metrics)",
    )
    group.add_argument(
        "--skip_full_eval",
        type=boolean,
        nargs="?",
        const=True,
        default=False,
        help="skip the full test-set evaluation at the end (also --skip_full_eval=true/false)",
    )
    group.add_argument(
        "--seed",
        type=integer(0),
        default=42,
        help="the training seed: weight initialisation and the order of the training batches",
    )
    group.add_argument(
        "--initial_epoch", type=integer(0), default=0, help="epochs already done: train N+1.."
    )
    group.add_argument(
        "--warm_start_from",
        default=None,
        help="checkpoint dir of another trial: start from its latest checkpoint's weights "
        "(Hyperband); with --initial_epoch N, trains epochs N+1..num_epochs",
    )


def _add_io(group: argparse._ArgumentGroup) -> None:
    for split, env in (
        ("train", "AIP_TRAINING_DATA_URI"),
        ("eval", "AIP_VALIDATION_DATA_URI"),
        ("test", "AIP_TEST_DATA_URI"),
    ):
        group.add_argument(
            f"--{split}_data",
            default=None,
            help=f"CSV path(s) or glob(s), comma-separated, local or gs:// "
            f"(default: ${env}, else the embedded nycflights13 {split}.csv)",
        )
    group.add_argument(
        "--output_dir",
        default="./trainer_output",
        help="base of checkpoints/, model/ and logs/ when AIP_CHECKPOINT_DIR, AIP_MODEL_DIR, "
        "AIP_TENSORBOARD_LOG_DIR are not set",
    )
    group.add_argument(
        "--export_format",
        type=export_formats,
        default="keras",
        help="comma-separated exports to write to the model dir: keras, saved_model",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and cross-check the flags; exits with status 2 and a one-line error on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_examples < args.train_batch_size:
        parser.error("argument --num_examples: must be at least --train_batch_size")
    if args.initial_epoch >= args.num_epochs:
        parser.error("argument --initial_epoch: must be below --num_epochs")
    return args
