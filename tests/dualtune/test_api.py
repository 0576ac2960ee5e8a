"""The Python API: the README's example runs as written, and the API's own edges."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FIXTURES, REPO


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


@pytest.mark.slow
def test_the_readme_example_runs_as_written(isolated, flights_data):
    (isolated / "search_spaces").symlink_to(REPO / "search_spaces")
    done = subprocess.run(
        [sys.executable, "-c", readme_example()],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^COMPLETED \d+ 0\.\d+", done.stdout, flags=re.M), done.stdout
    assert "registered flights-notebook version 1" in done.stdout
    client = MlflowClient(f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}")
    (version,) = client.search_model_versions("name = 'flights-notebook'")
    assert str(version.version) == "1"


def test_a_study_is_checked_before_anything_is_created(isolated):
    import dualtune

    study = dualtune.Study.from_file(FIXTURES / "toy.yaml", name="api-bad", say=None)
    with pytest.raises(dualtune.UserError, match="--parallel-trials: 9 exceeds --max-trials 2"):
        study.run("local", max_trials=2, parallel_trials=9)
    with pytest.raises(dualtune.UserError, match="--backend: unknown backend 'cloud'"):
        study.run("cloud")
    with pytest.raises(dualtune.UserError, match="--detach: the local backend"):
        study.run(dualtune.LocalSettings(check_trainer=False), detach=True)
    with pytest.raises(dualtune.UserError, match="seed: 'x' is not a whole number"):
        dualtune.LocalSettings(seed="x")
    assert not (isolated / "studies" / "api-bad").exists()


@pytest.mark.slow
def test_run_trials_best_and_resume_through_the_api(isolated):
    import dualtune

    study = dualtune.Study.from_file(FIXTURES / "toy.yaml", name="api", say=None)
    result = study.run(dualtune.LocalSettings(seed=5), max_trials=3, parallel_trials=1,
                       extra_args=["--num_epochs=2"], display=False)  # fmt: skip
    assert result.ok and result.status == "COMPLETED"
    trials = study.trials()
    assert len(trials) == 3 and {t.status for t in trials} == {"COMPLETED"}
    assert study.best().trial_id == result.best_trial_id
    assert float(study.best().final) == pytest.approx(result.best_value)
    again = dualtune.Study.load("api", say=None)
    assert again.space.budget.max_trials == 3  # the budget it ran with, not the file's
    resumed = again.resume(display=False)  # nothing left to run: the same best, no new trial
    assert resumed.best_trial_id == result.best_trial_id
    assert len(again.trials()) == 3
