"""`python -m trainer.task` as a real process: the Vertex trial contract end to end."""

from __future__ import annotations

import filecmp
import json
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from trainer_helpers import (
    TINY_BUDGET,
    data_flags,
    hypertune_lines,
    run_trainer,
    trainer_argv,
    trainer_env,
)

pytestmark = pytest.mark.slow


def _steps(hypertune_file: Path) -> list[int]:
    return [int(line["global_step"]) for line in hypertune_lines(hypertune_file)]


def _checkpoints(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("epoch-*.keras"))


@pytest.fixture(scope="module")
def contract_run(small_data, tmp_path_factory):
    """One 2-epoch trial with every AIP_* variable set, data included, and both exports."""
    root = tmp_path_factory.mktemp("contract")
    dirs = {name: root / name for name in ("checkpoints", "model", "logs")}
    env = trainer_env(
        CLOUD_ML_HP_METRIC_FILE=str(root / "hypertune" / "metrics.txt"),
        AIP_CHECKPOINT_DIR=str(dirs["checkpoints"]),
        AIP_MODEL_DIR=str(dirs["model"]),
        AIP_TENSORBOARD_LOG_DIR=str(dirs["logs"]),
        AIP_TRAINING_DATA_URI=str(small_data["train"]),
        AIP_VALIDATION_DATA_URI=str(small_data["eval"]),
        AIP_TEST_DATA_URI=str(small_data["test"]),
    )
    args = (*TINY_BUDGET, "--num_epochs=2", "--export_format=keras,saved_model")
    done = run_trainer(*args, env=env, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return SimpleNamespace(
        done=done, root=root, hypertune=root / "hypertune" / "metrics.txt", **dirs
    )


def test_one_hypertune_report_per_epoch(contract_run):
    lines = hypertune_lines(contract_run.hypertune)
    assert [int(line["global_step"]) for line in lines] == [1, 2]
    for epoch, line in enumerate(lines, start=1):
        assert 0 < float(line["val_rmse"]) < 1
        assert f"epoch {epoch} val_rmse " in contract_run.done.stdout
        assert line["checkpoint_path"].endswith(f"epoch-{epoch:04d}.keras")


def test_aip_dirs_receive_checkpoints_logs_model_and_metrics(contract_run):
    assert _checkpoints(contract_run.checkpoints) == ["epoch-0001.keras", "epoch-0002.keras"]
    assert list((contract_run.logs / "train").glob("events.out.tfevents.*"))
    assert list((contract_run.logs / "validation").glob("events.out.tfevents.*"))
    assert (contract_run.model / "model.keras").is_file()
    assert (contract_run.model / "saved_model" / "saved_model.pb").is_file()
    metrics = json.loads((contract_run.model / "metrics.json").read_text())
    for name in ("val_rmse", "val_accuracy", "val_auc", "test_rmse", "test_accuracy", "test_auc"):
        assert 0 <= metrics[name] <= 1, name
    assert metrics["epochs"] == 2
    assert not (contract_run.root / "trainer_output").exists()  # AIP_* dirs win


def test_exported_model_is_a_copy_of_the_last_checkpoint(contract_run):
    """The trial's final state is already serialised in its last checkpoint: no second save."""
    exported = contract_run.model / "model.keras"
    assert filecmp.cmp(exported, contract_run.checkpoints / "epoch-0002.keras", shallow=False)
    assert not list(contract_run.model.glob(".partial-*"))


def test_warm_start_trains_the_remaining_epochs_from_another_trial(
    contract_run, small_data, tmp_path
):
    hypertune = tmp_path / "metrics.txt"
    # An explicit data flag wins over the environment: this URI is never read.
    env = trainer_env(
        CLOUD_ML_HP_METRIC_FILE=str(hypertune), AIP_TRAINING_DATA_URI="/nonexistent/*.csv"
    )
    done = run_trainer(
        *data_flags(small_data),
        *TINY_BUDGET,
        "--skip_full_eval",
        "--nbuckets=5.0",  # Vertex's formatting of an integer
        "--num_epochs=2",
        "--initial_epoch=1",
        f"--warm_start_from={contract_run.checkpoints}",
        "--learning_rate=1e-9",  # so the weights stay (almost) exactly the loaded ones
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warm start from the weights of" in done.stdout and "epoch-0002.keras" in done.stdout
    assert _steps(hypertune) == [2]
    warm = json.loads((tmp_path / "trainer_output" / "model" / "metrics.json").read_text())
    source = json.loads((contract_run.model / "metrics.json").read_text())
    assert warm["val_rmse"] == pytest.approx(source["val_rmse"], abs=1e-4)
    assert not [name for name in warm if name.startswith("test_")]  # --skip_full_eval
    assert not (tmp_path / "trainer_output" / "model" / "saved_model").exists()  # keras only


def _run_until_sigterm(args: tuple[str, ...], env: dict[str, str], tmp_path: Path) -> list[str]:
    """Start a trial, SIGTERM it once epoch 1 is reported; its stdout lines."""
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(
            trainer_argv(*args), env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "epoch 1 val_rmse" in line:
                process.send_signal(signal.SIGTERM)
                break
        lines.extend(process.stdout)
        assert process.wait(timeout=120) == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    return lines


def test_sigterm_keeps_the_last_epoch_and_a_rerun_resumes_after_it(small_data, tmp_path):
    hypertune = tmp_path / "metrics.txt"
    env = trainer_env(CLOUD_ML_HP_METRIC_FILE=str(hypertune))
    args = (*data_flags(small_data), *TINY_BUDGET, "--skip_full_eval")
    lines = _run_until_sigterm((*args, "--num_epochs=20"), env, tmp_path)
    stopped = [line for line in lines if "stopped by SIGTERM after epoch" in line]
    assert stopped, "".join(lines)
    epoch = int(stopped[0].split()[-1])
    assert 1 <= epoch < 20
    output = tmp_path / "trainer_output"
    kept = _checkpoints(output / "checkpoints")
    assert kept[-1] == f"epoch-{epoch:04d}.keras" and len(kept) <= 2  # only the latest 2
    assert not list((output / "checkpoints").glob(".partial-*"))
    assert _steps(hypertune) == list(range(1, epoch + 1))
    assert not (output / "model").exists()  # no export after SIGTERM

    resumed = run_trainer(*args, f"--num_epochs={epoch + 1}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming after epoch {epoch}" in resumed.stdout
    assert _steps(hypertune) == [epoch + 1]  # only the epoch trained now
    assert f"epoch {epoch} val_rmse" not in resumed.stdout
    assert (output / "model" / "model.keras").is_file()


def test_nan_loss_exits_3_and_no_data_flag_means_the_embedded_data(flights_data, tmp_path):
    env = trainer_env(
        CLOUD_ML_HP_METRIC_FILE=str(tmp_path / "metrics.txt"),
        DUALTUNE_DATA_DIR=str(flights_data["train"].parent),
    )
    # 1e38: Adam's first steps take the weights past float32's range whatever the CPU's kernels
    # (1e30 only made the loss huge on some machines, never NaN).
    done = run_trainer(*TINY_BUDGET, "--learning_rate=1e38", env=env)
    assert done.returncode == 3
    assert "NaN loss at epoch 1" in done.stderr
    assert f"rows from {flights_data['train']}" in done.stdout
    assert not _checkpoints(tmp_path / "trainer_output" / "checkpoints")
    assert not (tmp_path / "metrics.txt").exists()
