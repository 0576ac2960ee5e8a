"""The trainer's command line: every flag listed, Vertex's integer formatting, strict parsing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from trainer_helpers import trainer_argv, trainer_env

from trainer.flags import build_parser, parse_args

EVERY_FLAG = (
    "--train_batch_size",
    "--nbuckets",
    "--nembeds",
    "--dnn_hidden_units",
    "--learning_rate",
    "--num_epochs",
    "--num_examples",
    "--num_eval_examples",
    "--eval_sample_seed",
    "--eval_batch_size",
    "--skip_full_eval",
    "--seed",
    "--initial_epoch",
    "--warm_start_from",
    "--export_format",
    "--train_data",
    "--eval_data",
    "--test_data",
    "--output_dir",
)


def test_help_lists_every_flag_without_importing_tensorflow():
    done = subprocess.run(
        trainer_argv("--help"), env=trainer_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for flag in EVERY_FLAG:
        assert flag in done.stdout
    parser_flags = {s for a in build_parser()._actions for s in a.option_strings} - {"-h", "--help"}
    assert parser_flags == set(EVERY_FLAG)
    probe = "import trainer.task, sys; print('tensorflow' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", probe], text=True).strip() == "False"


def test_defaults_are_the_initial_guess():
    args = parse_args([])
    assert (args.train_batch_size, args.nbuckets, args.nembeds) == (64, 5, 3)
    assert args.dnn_hidden_units == (64, 32)
    assert (args.learning_rate, args.num_epochs, args.seed) == (0.001, 10, 42)
    assert (args.num_examples, args.num_eval_examples) == (100000, 10000)
    assert args.eval_sample_seed == 0  # fixed, and apart from the training seed
    assert args.skip_full_eval is False and args.export_format == ("keras",)
    assert args.initial_epoch == 0 and args.warm_start_from is None
    assert args.train_data is None and args.output_dir == "./trainer_output"


@pytest.mark.parametrize(
    "argv", [["--nbuckets=7.0"], ["--nbuckets", "7.0"], ["--nbuckets=7"], ["--nbuckets", "7"]]
)
def test_integer_flags_accept_vertex_float_formatting(argv):
    assert parse_args(argv).nbuckets == 7


@pytest.mark.parametrize("value", ["7.5", "seven", "nan", "1"])
def test_integer_flags_reject_non_integral_values_naming_the_flag(value, capsys):
    with pytest.raises(SystemExit, match="2"):
        parse_args([f"--nbuckets={value}"])
    assert "argument --nbuckets:" in capsys.readouterr().err


def test_boolean_and_list_flags():
    assert parse_args(["--skip_full_eval"]).skip_full_eval is True
    assert parse_args(["--skip_full_eval=true"]).skip_full_eval is True
    assert parse_args(["--skip_full_eval=false"]).skip_full_eval is False
    assert parse_args(["--dnn_hidden_units=256,64,16"]).dnn_hidden_units == (256, 64, 16)
    assert parse_args(["--export_format=keras,saved_model"]).export_format == (
        "keras",
        "saved_model",
    )
    assert parse_args(["--learning_rate", "1e-4"]).learning_rate == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--nbucket=5"], "unrecognized arguments: --nbucket=5"),
        (["--dnn_hidden_units=64,x"], "argument --dnn_hidden_units:"),
        (["--export_format=onnx"], "argument --export_format:"),
        (["--learning_rate=0"], "argument --learning_rate:"),
        (["--skip_full_eval=maybe"], "argument --skip_full_eval:"),
        (["--num_examples=10"], "argument --num_examples:"),
        (["--initial_epoch=10"], "argument --initial_epoch:"),
    ],
)
def test_bad_flags_are_argparse_errors(argv, named, capsys):
    with pytest.raises(SystemExit, match="2"):
        parse_args(argv)
    assert named in capsys.readouterr().err
