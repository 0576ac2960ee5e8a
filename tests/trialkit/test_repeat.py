"""trialkit.repeat's pieces: its arguments, each execution's environment, the mean's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from trialkit.hypertune_file import read_reports
from trialkit.repeat import MeanReporter, execution_env, local_path, parse, wrapper_args


def test_its_own_args_come_before_the_trainers_and_vertex_appends_the_flags():
    own = wrapper_args(2, "val_rmse", "minimize", "best", "--seed", "trainer.task")
    options, trainer = parse([*own, "--", "--num_epochs=2", "--x=0.5"])
    assert options["executions"] == "2" and options["seed-flag"] == "--seed"
    assert options["module"] == "trainer.task"
    assert trainer == ["--num_epochs=2", "--x=0.5"]


def test_a_malformed_option_is_one_line():
    with pytest.raises(SystemExit, match=r"trialkit.repeat: missing --executions, --module"):
        parse(["--tag=val_rmse", "--"])


def test_each_execution_has_its_own_metric_file_and_output_dirs(tmp_path):
    env = {"AIP_MODEL_DIR": "gs://b/base/3/model/", "AIP_CHECKPOINT_DIR": "/x/ckpt", "K": "v"}
    own = execution_env(env, tmp_path / "hypertune" / "output.metrics", 2)
    assert own["CLOUD_ML_HP_METRIC_FILE"] == str(tmp_path / "hypertune" / "execution-2.metrics")
    assert own["AIP_MODEL_DIR"] == "gs://b/base/3/model/execution-2/"
    assert own["AIP_CHECKPOINT_DIR"] == "/x/ckpt/execution-2/"
    assert own["K"] == "v" and "AIP_TENSORBOARD_LOG_DIR" not in own
    assert local_path("gs://b/base/3") == Path("/gcs/b/base/3")


def test_the_mean_is_written_as_cloudml_hypertune_writes_it(tmp_path):
    path = tmp_path / "hypertune" / "output.metrics"
    reporter = MeanReporter(path, "val_rmse", "7")
    reporter.report(1, 0.5)
    reporter.report(1, 0.4)  # a step once
    reporter.report(2, 0.25)
    assert [(r.step, r.value) for r in read_reports(path, "val_rmse")] == [(1, 0.5), (2, 0.25)]
