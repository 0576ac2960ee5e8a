"""What the command line does when a flag is left out or misspelt: the latest study is the most
recently created one for every command, finalize/tune --resume/deploy/predict/pipeline default
to the backend the study's record names, and a misspelt flag is answered by its subcommand with
the closest real flag. Through the real CLI (dualtune.cli.main), on real study records."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from dualtune import study_record
from dualtune.cli import build_parser, main
from tests.conftest import FIXTURES

TOY = FIXTURES / "toy.yaml"


def _study(root: Path, name: str, backend: str = "local", **fields) -> Path:
    """A study record as `dualtune tune` creates it (no trial needed for what is tested here)."""
    meta = {
        "backend": backend, "algorithm": "random", "space_source": str(TOY),
        "budget": {"max_trials": 3, "parallel_trials": 2, "max_failed_trials": 1},
        "trainer": {"script": "toy_trainer.py"}, **fields,
    }  # fmt: skip
    return study_record.create(root / "studies", name, TOY, meta).path


@pytest.fixture(autouse=True)
def _no_emulator(monkeypatch):
    monkeypatch.delenv("DUALTUNE_VERTEX_EMULATOR", raising=False)


# -- 1. a misspelt flag ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, says",
    [
        (
            ["tune", "--max-trail", "2"],
            "dualtune tune: error: unrecognized arguments: --max-trail 2 "
            "(did you mean --max-trials?); see `dualtune tune --help`",
        ),
        (
            ["compare", "--outptu", "x.png"],
            "dualtune compare: error: unrecognized arguments: --outptu "
            "(did you mean --output?); see `dualtune compare --help`",
        ),
        (
            ["trials", "--stduy", "s"],
            "dualtune trials: error: unrecognized arguments: --stduy s "
            "(did you mean --study?); see `dualtune trials --help`",
        ),
        (
            ["space", "show", str(TOY), "--targte=vertex"],
            "dualtune space show: error: unrecognized arguments: --targte=vertex "
            "(did you mean --target?); see `dualtune space show --help`",
        ),
        (  # nothing close: no guess, still the subcommand's own help
            ["finalize", "--zzzzzz"],
            "dualtune finalize: error: unrecognized arguments: --zzzzzz; "
            "see `dualtune finalize --help`",
        ),
    ],
)
def test_a_misspelt_flag_names_the_closest_flag_of_its_subcommand(argv, says, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [says]


def test_a_flag_of_another_subcommand_is_not_guessed(capsys):
    """--max-trials is tune's: trials has no flag close to it, so no guess at all."""
    with pytest.raises(SystemExit):
        main(["trials", "--max-trials", "2"])
    assert "did you mean" not in capsys.readouterr().err


def test_a_unique_prefix_of_a_flag_still_works():
    args = build_parser().parse_args(["tune", "--max-tri", "3", "--parallel", "2"])
    assert (args.max_trials, args.parallel_trials) == (3, 2)


# -- 3. the latest study ------------------------------------------------------------------------
def test_the_latest_study_is_the_one_created_last_not_the_one_updated_last(isolated):
    _study(isolated, "older")
    time.sleep(0.05)
    _study(isolated, "newer")
    # The older one is updated last (a finalize, a resume): its study.json is the newest file.
    study_record.StudyRecord(isolated / "studies" / "older").update(status="COMPLETED")
    later = time.time() + 10
    os.utime(isolated / "studies" / "older" / "study.json", (later, later))
    assert study_record.find(isolated / "studies", None).name == "newer"


def test_a_record_without_a_created_time_is_placed_by_its_space_copy(isolated):
    """Records written before `created` existed: when the space was copied in, not when
    study.json was last rewritten."""
    for name, made in (("old", 1_000_000), ("new", 2_000_000)):
        folder = isolated / "studies" / name
        folder.mkdir(parents=True)
        (folder / "space.yaml").write_text(TOY.read_text())
        (folder / "study.json").write_text(json.dumps({"study": name, "backend": "local"}))
        os.utime(folder / "space.yaml", (made, made))
    later = time.time() + 10
    os.utime(isolated / "studies" / "old" / "study.json", (later, later))
    assert study_record.find(isolated / "studies", None).name == "new"


def test_a_study_being_created_is_not_the_latest(isolated):
    _study(isolated, "real")
    staging = isolated / "studies" / ".other.creating-1"
    staging.mkdir()
    (staging / "study.json").write_text(json.dumps({"study": "other", "created": time.time()}))
    assert study_record.find(isolated / "studies", None).name == "real"


def test_every_command_defaulting_to_the_latest_study_picks_the_same_one(isolated, capsys):
    """trials, compare, finalize and deploy name the study they start from in their one-line
    error (nothing recorded in MLflow): each must name the newest study, not the touched one."""
    _study(isolated, "older")
    time.sleep(0.05)
    _study(isolated, "newer")
    later = time.time() + 10
    os.utime(isolated / "studies" / "older" / "study.json", (later, later))
    store = ["--tracking-uri", f"sqlite:///{isolated / 'mlflow.db'}"]
    for argv in (["trials"], ["compare"], ["finalize", "--backend", "local"], ["deploy"]):
        assert main([*argv, *store]) != 0, argv
        out, err = capsys.readouterr()
        assert "newer" in out + err and "older" not in out + err, (argv, out, err)


# -- 2. the backend a study was tuned on ----------------------------------------------------------
def test_finalize_of_a_vertex_study_defaults_to_vertex_and_says_so(isolated, capsys):
    _study(isolated, "v", backend="vertex")
    assert main(["finalize", "--study", "v"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == (
        "finalize study v on the vertex backend (the one it was tuned on; --backend local to "
        "run it there)"
    )
    # Vertex it is: its settings are asked for (none recorded, no emulator), nothing ran.
    assert "--project: required with --backend vertex" in err


def test_finalize_with_an_explicit_backend_local_runs_a_vertex_study_locally(isolated, capsys):
    _study(isolated, "v", backend="vertex")
    store = ["--tracking-uri", f"sqlite:///{isolated / 'mlflow.db'}"]
    assert main(["finalize", "--study", "v", "--backend", "local", *store]) != 0
    out, err = capsys.readouterr()
    assert "vertex backend" not in out and "--project" not in err
    assert re.search(r"study 'v'|study v", err), err  # it went on to look for its trials


def test_tune_resume_of_a_vertex_study_needs_no_backend_flag(isolated, capsys):
    _study(isolated, "v", backend="vertex")
    assert main(["tune", "--resume", "--study", "v"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "tune study v on the vertex backend (the one it ran on)"
    assert "--project: required with --backend vertex" in err and "resume it with" not in err


def test_pipeline_again_on_a_vertex_study_defaults_to_vertex(isolated, capsys):
    _study(isolated, "v", backend="vertex", pipeline={"backend": "vertex", "steps": {}})
    assert main(["pipeline", "--study", "v"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "pipeline study v on the vertex backend (the one it ran on)"
    assert "ran on vertex" not in err and "--project: required with --backend vertex" in err


def test_deploy_defaults_to_vertex_after_a_finalize_that_uploaded_a_vertex_model(isolated, capsys):
    finalized = {"backend": "vertex", "vertex_model": "projects/p/models/m@1"}
    _study(isolated, "v", backend="vertex", finalized=finalized)
    store = ["--tracking-uri", f"sqlite:///{isolated / 'mlflow.db'}"]
    assert main(["deploy", "--study", "v", *store]) != 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[0] == (
        "deploy study v on the vertex backend (its last finalize uploaded a Vertex model; "
        "--backend local to serve it here)"
    )


def test_deploy_of_a_study_finalized_locally_stays_local(isolated, capsys):
    _study(isolated, "v", backend="vertex", finalized={"backend": "local", "vertex_model": None})
    store = ["--tracking-uri", f"sqlite:///{isolated / 'mlflow.db'}"]
    assert main(["deploy", "--study", "v", *store]) != 0
    out, err = capsys.readouterr()
    assert "vertex" not in out and "Vertex" not in err


def test_predict_defaults_to_the_vertex_endpoint_deploy_recorded(isolated, capsys):
    """No --url and no local server of the study, but `deploy --backend vertex` recorded an
    endpoint: predict asks that (vertex), not for a local server it cannot find."""
    from dualtune.vertex_serving import VERTEX_DEPLOYMENT_FILE

    folder = _study(isolated, "v", backend="vertex")
    (isolated / "rows.csv").write_text("x\n1\n")
    argv = ["predict", "--instances", str(isolated / "rows.csv")]
    argv += ["--tracking-uri", f"sqlite:///{isolated / 'mlflow.db'}"]
    assert main(argv) == 2
    assert "no model server runs for it" in capsys.readouterr().err  # local: nothing deployed
    (folder / VERTEX_DEPLOYMENT_FILE).write_text(json.dumps({"endpoint": "e"}))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no model server runs" not in err and "no finalized model yet" in err, err


# -- 4. and 5. help and examples ------------------------------------------------------------------
@pytest.mark.parametrize("command", ["tune", "finalize", "pipeline"])
def test_trainer_args_are_in_the_usage_of_the_commands_that_take_them(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    usage = out.split("\n\n", 1)[0]
    assert usage.rstrip().endswith("[-- TRAINER_ARGS ...]"), usage
    assert "TRAINER_ARGS: everything after `--` goes to the trainer" in out


def test_help_pages_say_the_defaults(capsys):
    pages = {}
    for command in ("tune", "finalize", "ui", "deploy", "emulator"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        pages[command] = " ".join(capsys.readouterr().out.split())
    assert "--max-trials MAX_TRIALS (default: from the space file)" in pages["tune"]
    assert "--parallel-trials PARALLEL_TRIALS (default: from the space file)" in pages["tune"]
    assert "(default: local; with --resume, the backend the study ran on)" in pages["tune"]
    assert "--python PYTHON interpreter for the training" in pages["finalize"]
    assert "--env KEY=VALUE environment variable for the training" in pages["finalize"]
    assert "(default: the backend the study was tuned on)" in pages["finalize"]
    assert "--port PORT (default: 5000)" in pages["ui"]
    assert "--port PORT (default: 5001)" in pages["deploy"]
    assert "--port PORT (default: 8780)" in pages["emulator"]
    with pytest.raises(SystemExit):
        main(["--help"])
    top = " ".join(capsys.readouterr().out.split())
    assert "best trial's parameters" not in top and "the guess" in top


@pytest.mark.parametrize(
    "flag, example",
    [("--max-trials", "10"), ("--parallel-trials", "2"), ("--executions-per-trial", "3")],
)
def test_a_zero_count_suggests_a_sensible_value_of_that_flag(flag, example, capsys):
    with pytest.raises(SystemExit):
        main(["tune", flag, "0"])
    assert f"argument {flag}: '0' must be at least 1; give e.g. {example};" in (
        capsys.readouterr().err
    )
