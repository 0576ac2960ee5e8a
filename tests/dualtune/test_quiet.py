"""What a person's terminal shows: dualtune's own lines only; the libraries' warnings and
TensorFlow's native start-up lines stay behind --verbose, and in the trials' own stderr.log."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import FIXTURES, TOY_TRAINER, dualtune_argv

pytestmark = pytest.mark.slow

NOISE = (
    "Warning",
    "cudart_stub",
    "cuda_platform",
    "ConvergenceWarning",
    "DeprecationWarning",
    "oneDNN",
    "absl::InitializeLog",
)

# The toy trainer, after the lines a TensorFlow trainer writes to its stderr at start-up.
NOISY_TRAINER = f"""
import runpy, sys, warnings
print("I0000 00:00:1796174011.148251    4687 cudart_stub.cc:31] Could not find cuda drivers "
      "on your machine, GPU will not be used.", file=sys.stderr)
warnings.warn("the trial's own DeprecationWarning", DeprecationWarning, stacklevel=1)
runpy.run_path({str(TOY_TRAINER)!r}, run_name="__main__")
"""


def tune(tmp, *flags: str) -> subprocess.CompletedProcess:
    (tmp / "noisy.py").write_text(NOISY_TRAINER)
    space = (FIXTURES / "toy.yaml").read_text().replace("toy_trainer.py", str(tmp / "noisy.py"))
    (tmp / "space.yaml").write_text(space.replace("algorithm: random", "algorithm: bayesian"))
    argv = dualtune_argv("tune", "--space", str(tmp / "space.yaml"), *flags)
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp)


def test_a_study_prints_only_dualtunes_lines(isolated):
    done = tune(isolated, "--study", "quiet")
    assert done.returncode == 0, done.stderr
    assert "study quiet COMPLETED" in done.stdout
    shown = done.stdout + done.stderr
    assert [n for n in NOISE if n in shown] == [], shown
    logs = sorted((isolated / "studies" / "quiet" / "trials").glob("*/stderr.log"))
    assert len(logs) == 3
    for log in logs:  # the trials keep theirs
        text = log.read_text()
        assert "cudart_stub.cc" in text and "DeprecationWarning" in text


def test_verbose_shows_warnings_debug_logs_and_tensorflows_start_up_lines(isolated):
    done = tune(isolated, "--study", "loud", "--verbose")
    assert done.returncode == 0, done.stderr
    assert "cudart_stub.cc" in done.stderr  # the orchestrator's own TensorFlow import
    assert "WARNING py.warnings:" in done.stderr and "DeprecationWarning" in done.stderr
    assert "DEBUG " in done.stderr
