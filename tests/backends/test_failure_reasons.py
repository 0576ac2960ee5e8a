"""A failed trial's reason: its own last stderr lines (TensorFlow's start-up lines left out), and
"out of memory" only where the system or the trainer says so."""

from __future__ import annotations

import textwrap

import pytest

from backends.base import FAILED, StudyRequest, TrialEnded
from backends.local.backend import LocalBackend
from backends.local.settings import LocalSettings
from search_spaces.model import Budget, Parameter, SearchSpace, Trainer
from trialkit.startup_noise import is_startup_noise, meaningful_lines

# Lines as TensorFlow 2.21 writes them at import and at its first op on a machine without a GPU.
STARTUP = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796174011.145633    4687 port.cc:153] oneDNN custom operations are on. You may "
    "see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796174011.148251    4687 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "E0000 00:00:1796174020.691772    4713 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1796174020.7 4713 cpu_feature_guard.cc:210] This TensorFlow binary is optimized "
    "to use available CPU instructions in performance-critical operations.",
]

SELF_KILLING_TRAINER = """
import argparse, os, signal, sys
argparse.ArgumentParser().add_argument("--x")
for line in {startup!r}:
    print(line, file=sys.stderr)
print("reading shard 3 of 7", file=sys.stderr)
print("E0000 00:00:1796174020.8 4713 data_loader.cc:9] shard 3 is truncated", file=sys.stderr)
for line in {startup!r}[1:3]:
    print(line, file=sys.stderr)
sys.stderr.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_startup_lines_are_noise_and_the_trainers_own_lines_are_not():
    assert all(is_startup_noise(line) for line in STARTUP)
    own = [
        "Traceback (most recent call last):",
        "E0000 00:00:1796174020.8 4713 data_loader.cc:9] shard 3 is truncated",
        "ValueError: learning_rate must be positive",
    ]
    assert not any(is_startup_noise(line) for line in own)
    assert meaningful_lines("\n".join([STARTUP[0], own[0], "", STARTUP[2], own[2]])) == [
        own[0],
        own[2],
    ]


@pytest.mark.slow
@pytest.mark.parametrize("prewarm", [True, False], ids=["served", "cold"])
def test_a_sigkilled_trial_is_killed_by_signal_9_with_its_own_last_lines(tmp_path, prewarm):
    script = tmp_path / "dies.py"
    script.write_text(textwrap.dedent(SELF_KILLING_TRAINER.format(startup=STARTUP)))
    space = SearchSpace(
        name="dies",
        parameters=(Parameter("x", "discrete", values=(0.5,)),),
        trainer=Trainer(module=None, script=str(script)),
        budget=Budget(max_trials=1, parallel_trials=1, max_failed_trials=1),
        algorithm="grid",
    )
    events = []
    request = StudyRequest(study="t", space=space, workdir=tmp_path / "study")
    LocalBackend(LocalSettings(prewarm=prewarm)).run(request, events.append)
    (ended,) = [e for e in events if isinstance(e, TrialEnded)]
    assert ended.status == FAILED
    assert ended.reason == (
        "killed by signal 9: reading shard 3 of 7\n"
        "E0000 00:00:1796174020.8 4713 data_loader.cc:9] shard 3 is truncated"
    )
    log = (tmp_path / "study" / "trials" / ended.trial_id / "stderr.log").read_text()
    assert log.count("cudart_stub.cc") == 2  # the trial's own log keeps everything
