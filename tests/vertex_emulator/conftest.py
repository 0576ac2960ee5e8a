"""Fixtures: one emulator for the session, the real aiplatform SDK pointed at it, a tiny trainer.

The trainer is packaged once by CustomJob.from_local_script (an sdist uploaded to the storage
emulator) with a prebuilt image URI, so worker pools get a pythonPackageSpec; tests then build
their jobs around that package URI.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vertex_emulator import start

IMAGE = "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest"
MODULE = "aiplatform_custom_trainer_script.task"

# Reports `loss` for --epochs epochs through cloudml-hypertune; loss = base / epoch, with base
# computed from the flags, or the values of --curve. Writes what it saw to AIP_MODEL_DIR/seen.json.
TRAINER = """
import argparse, json, os, sys, time
import hypertune

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--units", type=int, default=4)
p.add_argument("--act", default="relu")
p.add_argument("--width", type=float, default=1.0)
p.add_argument("--dropout", type=float, default=0.0)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--curve", default="")
p.add_argument("--fail-when", default="")
p.add_argument("--gate", default="")
p.add_argument("--gate-when", default="always")
p.add_argument("--ignore-sigterm", action="store_true")
a = p.parse_args()
if a.ignore_sigterm:
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

model_dir = os.environ["AIP_MODEL_DIR"]
seen = {"argv": sys.argv[1:], "pid": os.getpid(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("AIP_", "CLOUD_ML_"))}}
with open(os.path.join(model_dir, "seen.json"), "w") as f:
    json.dump(seen, f)

def matches(when):
    return when == "always" or when == a.act

base = abs(a.lr - 0.01) + a.units / 100 + (0.0 if a.act == "relu" else 1.0) + a.width / 100
base += a.dropout
curve = [float(v) for v in a.curve.split(",")] if a.curve else []
ht = hypertune.HyperTune()
for epoch in range(1, a.epochs + 1):
    loss = curve[epoch - 1] if curve else base / epoch
    ht.report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag="loss", metric_value=loss, global_step=epoch)
    if epoch == 1 and a.fail_when and matches(a.fail_when):
        print("boom: failing on purpose", file=sys.stderr)
        sys.exit(3)
    if epoch == 1 and a.gate and matches(a.gate_when):
        deadline = time.time() + 60
        while not os.path.exists(a.gate) and time.time() < deadline:
            time.sleep(0.05)
"""


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    # Keras Tuner's GP for Bayesian jobs: fast (tests/backends/test_vizier.py runs Vizier's).
    with start(
        workdir=tmp_path_factory.mktemp("emulator"),
        grace_s=2.0,
        poll_s=0.05,
        bayesian="keras_tuner",
    ) as em:
        yield em


@pytest.fixture
def aiplatform(emulator, monkeypatch):
    """The real SDK, initialised against the emulator, polling every 0.1 s instead of 5 s."""
    from google.cloud import aiplatform as sdk
    from google.cloud.aiplatform import jobs, training_jobs

    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.1)
    monkeypatch.setattr(training_jobs, "_JOB_WAIT_TIME", 0.1)
    sdk.init(**emulator.init_kwargs())
    emulator.clear_faults()
    yield sdk
    emulator.clear_faults()


@pytest.fixture(scope="session")
def trainer_script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trainer") / "trainer.py"
    path.write_text(TRAINER)
    return path


@pytest.fixture(scope="session")
def package_uri(emulator, trainer_script) -> str:
    """The trainer's sdist, packaged and uploaded by the SDK itself (once per session)."""
    from google.cloud import aiplatform as sdk

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", emulator.storage_url)
        sdk.init(**emulator.init_kwargs())
        job = sdk.CustomJob.from_local_script(
            display_name="packager",
            script_path=str(trainer_script),
            container_uri=IMAGE,
            credentials=emulator.credentials(),
        )
    spec = job.job_spec.worker_pool_specs[0].python_package_spec
    assert spec.python_module == MODULE
    return spec.package_uris[0]


@pytest.fixture
def make_custom_job(aiplatform, package_uri, emulator) -> Callable:
    """CustomJob(display_name, args) around the packaged trainer, its own output directory."""
    counter = iter(range(10**6))

    def make(display_name: str, args: list[str]):
        pool = {
            "machine_spec": {"machine_type": "n1-standard-4"},
            "replica_count": 1,
            "python_package_spec": {
                "executor_image_uri": IMAGE,
                "package_uris": [package_uri],
                "python_module": MODULE,
                "args": args,
            },
        }
        base = f"{emulator.bucket}/out/{display_name}-{time.time_ns()}-{next(counter)}"
        return aiplatform.CustomJob(
            display_name=display_name, worker_pool_specs=[pool], base_output_dir=base
        )

    return make


@pytest.fixture
def wait_for() -> Callable:
    """wait_for(predicate, timeout_s): poll until it returns something truthy, or fail."""

    def wait(predicate: Callable, timeout_s: float = 30.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout_s}s")

    return wait
