"""Results you can trust, end to end on both backends: every study runs the guess (the trainer's
defaults) as a baseline at several seeds, re-runs its top trials at fresh seeds, and names the
winner; MLflow holds every one of those runs and the verdict; finalize trains the winner.

Real components: the local backend's trial processes, the vertex backend through the real
aiplatform SDK against the emulator, the toy trainer (its --seed moves its score by
--seed_noise), a real MLflow store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from backends.registry import BACKENDS
from tests.backends import test_vertex
from tests.backends.test_vertex import in_process, run_cli
from tests.conftest import FIXTURES, TOY_TRAINER, mlflow_study_runs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(r"ignore:(currentThread|getName)\(\) is deprecated"),
]

emulator, vertex_env, store = test_vertex.emulator, test_vertex.vertex_env, test_vertex.store

ROLE, WINNER = "dualtune.role", "dualtune.winner"
TINY = ("--num_epochs=2", "--seed_noise=0.01")


def settings(name: str, request: pytest.FixtureRequest):
    if name == "vertex":
        from dualtune.emulator_client import emulator_settings  # the edge: URL -> settings

        return emulator_settings(request.getfixturevalue("vertex_env").url)
    return BACKENDS["local"].settings_type(seed=3, prewarm=False)


def space_file(directory: Path, x: str = "{type: double, min: 0.0, max: 1.0}") -> Path:
    """toy.yaml with its trainer path absolute, and x's domain as given."""
    text = (FIXTURES / "toy.yaml").read_text().replace("toy_trainer.py", str(TOY_TRAINER))
    text = text.replace("x: {type: double, min: 0.0, max: 1.0}", f"x: {x}")
    path = directory / "space.yaml"
    path.write_text(text)
    return path


def study(directory: Path, name: str, uri: str, **kwargs):
    import dualtune

    return dualtune.Study.from_file(
        space_file(directory, **kwargs), name=name, tracking_uri=uri, say=None
    )


def by_role(uri: str, name: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for run in mlflow_study_runs(MlflowClient(uri), name):
        found.setdefault(run.data.tags.get(ROLE, ""), []).append(run)
    return found


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_study_runs_the_guess_and_confirms_its_winner(backend, request, isolated, store):
    name = f"trust-{backend}"
    result = study(isolated, name, store).run(
        settings(backend, request), max_trials=2, parallel_trials=2, extra_args=TINY,
        display=False,
    )  # fmt: skip
    assert result.status == "COMPLETED", result.reason
    runs = by_role(store, name)
    (parent,) = runs["study"]
    trial_ids = {r.data.tags["dualtune.trial_id"] for r in runs["trial"]}
    baseline, confirmations = runs["baseline"], runs["confirmation"]
    assert len(baseline) == 2 and len(confirmations) == 4  # 2 trials x 2 fresh seeds
    client = MlflowClient(store)
    for run in baseline + confirmations:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["dualtune.status"] == "COMPLETED" and run.info.status == "FINISHED"
        assert run.info.run_name.startswith(f"{backend}/{name}/")
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_rmse")]
        assert sorted(steps) == [1, 2]
    assert all(not r.data.params for r in baseline)  # the guess: no parameter at all
    assert {r.data.tags["dualtune.confirms"] for r in confirmations} == trial_ids
    tags = parent.data.tags
    winner, noise = tags[WINNER], float(tags["dualtune.noise"])
    guess = mean([float(r.data.tags["dualtune.final_value"]) for r in baseline])
    assert noise > 0 and float(tags["dualtune.guess_mean"]) == pytest.approx(guess)
    assert winner in trial_ids | {"baseline"}
    if winner == "baseline":
        assert float(tags["dualtune.improvement"]) == 0.0
    else:  # never a trial whose confirmed mean is worse than the guess's
        confirmed = [
            float(r.data.tags["dualtune.final_value"])
            for r in confirmations
            if r.data.tags["dualtune.confirms"] == winner
        ]
        assert mean(confirmed) < guess and float(tags["dualtune.improvement"]) > 0
    verdict = json.loads((isolated / "studies" / name / "study.json").read_text())["verdict"]
    assert verdict["winner"] == winner and verdict["words"] == tags["dualtune.verdict"]


def test_the_guess_wins_finalize_trains_it_without_parameter_flags_and_resume_adds_no_run(
    isolated, store, capsys
):
    """Every trial's x is far from the toy's optimum (0.3), the default's (0.5) is near: no
    trial beats the guess, so it wins; finalize trains the trainer's defaults."""
    import dualtune

    name = "guess-wins"
    tuned = study(isolated, name, store, x="{type: double, min: 0.95, max: 1.0}")
    local = dualtune.LocalSettings(seed=3, prewarm=False)
    capsys.readouterr()
    result = tuned.run(local, max_trials=1, parallel_trials=1, extra_args=TINY)
    assert result.status == "COMPLETED"
    last = capsys.readouterr().out.strip().splitlines()[-2:]  # the display's last lines
    assert last[0].startswith("best trial 0: ") and "x noise" in last[0], last
    assert last[1].startswith("verdict: no trial beat the guess beyond noise"), last
    before = {role: len(runs) for role, runs in by_role(store, name).items()}
    assert before == {"study": 1, "trial": 1, "baseline": 2, "confirmation": 2}
    (parent,) = by_role(store, name)["study"]
    assert parent.data.tags[WINNER] == "baseline"
    assert "no trial beat the guess beyond noise" in parent.data.tags["dualtune.verdict"]

    again = dualtune.Study.load(name, tracking_uri=store, say=None)
    assert again.resume(local).status == "COMPLETED"  # a completed study: nothing to resume
    after = {role: len(runs) for role, runs in by_role(store, name).items()}
    assert after == before  # nothing ran twice

    # The toy trainer exports no model.keras (registration fails), but the run happened:
    with pytest.raises(dualtune.UserError, match="wrote no .*model.keras"):
        again.finalize(local)
    (model,) = (isolated / "studies" / name / "finalize").glob("*/model/model.json")
    argv = json.loads(model.read_text())["argv"]
    assert argv == ["--num_epochs=4", *TINY]  # finalize args, extra args, no parameter flag
    (final,) = by_role(store, name)["finalize"]
    assert final.data.tags[WINNER] == "baseline"


def test_no_baseline_and_no_confirm_run_nothing_but_the_trials(isolated, store, capsys):
    import dualtune

    tuned = study(isolated, "bare", store)
    local = dualtune.LocalSettings(seed=3, prewarm=False)
    result = tuned.run(local, max_trials=1, parallel_trials=1, extra_args=TINY,
                       baseline=False, confirm=False, display=False)  # fmt: skip
    assert result.status == "COMPLETED"
    runs = by_role(store, "bare")
    assert sorted(runs) == ["study", "trial"]
    tags = runs["study"][0].data.tags
    assert tags[WINNER] == result.best_trial_id and "dualtune.noise" not in tags
    assert "no baseline ran" in tags["dualtune.verdict"]
    assert in_process("trials", "--study", "bare", "--tracking-uri", store) == 0
    assert "not compared with the guess" in capsys.readouterr().out


def test_a_study_where_every_run_failed_ends_failed_and_says_so(isolated, store, capsys):
    """Every trial and every baseline run fails (the trainer exits 1 for any x above -1): the
    study has nothing to finalize, so it is FAILED (exit 1), not COMPLETED with a best of None."""
    space = space_file(isolated)
    code = in_process(
        "tune", "--space", str(space), "--study", "broken", "--tracking-uri", store,
        "--max-trials", "2", "--max-failed-trials", "5", "--no-prewarm", "--", *TINY,
        "--fail_above=-1",
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "study broken FAILED: no usable trial; no trial and no baseline run produced a " \
        "usable val_rmse" in out, out  # fmt: skip
    assert "verdict: no usable trial and no usable baseline run: no winner" in out
    assert "dualtune trials --study broken" in err
    meta = json.loads((isolated / "studies" / "broken" / "study.json").read_text())
    assert meta["status"] == "FAILED"
    (parent,) = by_role(store, "broken")["study"]
    assert parent.data.tags["dualtune.status"] == "FAILED" and parent.info.status == "FAILED"


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--executions-per-trial", "0"), "--executions-per-trial: .*at least 1"),
        (("--executions-per-trial", "x"), "--executions-per-trial: .*whole number"),
    ],
)
def test_bad_trust_flags_are_one_line_and_create_nothing(isolated, flags, message):
    import re

    import dualtune

    done = run_cli("tune", "--space", str(space_file(isolated)), "--study", "bad", *flags)
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1 and re.search(message, err), err
    with pytest.raises(dualtune.UserError, match="--executions-per-trial: 0 must be at least 1"):
        study(isolated, "bad", "sqlite:///unused.db").run("local", executions_per_trial=0)
    assert not (isolated / "studies" / "bad").exists() and not (isolated / "mlruns").exists()


def test_two_studies_measure_the_guess_at_their_own_seeds(tmp_path):
    """The baseline's seeds come from the study's name: the same on resume, other for another
    study (else every study re-uses one pair of baseline runs and measures the noise once)."""
    from backends.base import StudyRequest
    from dualtune.trust import baseline_executions
    from search_spaces.loader import load_space

    space = load_space(FIXTURES / "toy.yaml")
    one = StudyRequest("study-a", space, tmp_path / "a")
    again = StudyRequest("study-a", space, tmp_path / "a")
    other = StudyRequest("study-b", space, tmp_path / "b")
    seeds = [e.seed for e in baseline_executions(one)]
    assert len(seeds) == space.trust.baseline.runs >= 2
    assert len(set(seeds)) == len(seeds)
    assert seeds == [e.seed for e in baseline_executions(again)]
    assert not set(seeds) & {e.seed for e in baseline_executions(other)}
