"""A trial that writes 50 MB to stderr: the orchestrator reads only the log's tail for the
failure reason, so its Python heap does not grow with the log.

Measured in a subprocess running real studies through the Python API (the real local backend,
trial server, MLflow store), with tracemalloc over everything the orchestrator allocates in
Python. The bound, 16 MiB over a study whose trial writes nothing: the tail read is 64 KiB;
the rest is the noise of one study's own recording (a few MiB, measured in the same process).
Reading the whole log, as before, cost about 100 MiB (the bytes, then the decoded text, then
its lines)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

TRAINER = """
import argparse, sys
import hypertune
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--megabytes", type=int, default=0)
args = p.parse_args()
hypertune.HyperTune().report_hyperparameter_tuning_metric(
    hyperparameter_metric_tag="loss", metric_value=args.x, global_step=1)
line = "noise " * 16 + "\\n"
for _ in range(args.megabytes * (1 << 20) // len(line)):
    sys.stderr.write(line)
print("the real reason: out of patience", file=sys.stderr)
sys.exit(1)
"""

SPACE = """
name: noisy
metric: {tag: loss, goal: minimize}
parameters:
  x: {type: double, min: 0.0, max: 1.0}
trainer:
  script: noisy.py
budget: {max_trials: 1, parallel_trials: 1, max_failed_trials: 1}
algorithm: random
"""

DRIVER = """
import json, sys, tracemalloc
import mlflow, keras_tuner  # imported before measuring: their import is not the log's cost
import dualtune.mlflow_recorder, backends.local.backend
from dualtune.api import Study

def study(name, megabytes):
    s = Study.from_file("space.yaml", name=name, say=None)
    s.run("local", extra_args=[f"--megabytes={megabytes}"], display=False)
    return s

study("warm", 0)  # the store is created and migrated outside the measurement
tracemalloc.start()
study("quiet", 0)
quiet = tracemalloc.get_traced_memory()[1]
tracemalloc.reset_peak()
noisy = study("noisy", 50)
loud = tracemalloc.get_traced_memory()[1]
print(json.dumps({"quiet": quiet, "loud": loud, "reason": noisy.trials()[0].reason}))
"""


def test_50_mb_of_stderr_does_not_grow_the_orchestrator(isolated):
    (isolated / "noisy.py").write_text(TRAINER)
    (isolated / "space.yaml").write_text(SPACE)
    done = subprocess.run(
        [sys.executable, "-c", DRIVER], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peaks = json.loads(done.stdout.strip().splitlines()[-1])
    log = isolated / "studies" / "noisy" / "trials" / "0" / "stderr.log"
    assert log.stat().st_size > 50 * 10**6  # the trial really wrote it
    assert "the real reason: out of patience" in peaks["reason"]
    growth = peaks["loud"] - peaks["quiet"]
    assert growth < 16 * 2**20, f"peak grew by {growth / 2**20:.1f} MiB: {peaks}"
