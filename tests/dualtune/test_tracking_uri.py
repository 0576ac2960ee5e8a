"""A relative SQLite tracking URI (sqlite:///mlruns/mlflow.db, relative to the current
directory as MLflow reads it) names the same store from anywhere once a study records it."""

from __future__ import annotations

import json

from dualtune.cli import main
from dualtune.tracking import resolve_tracking_uri
from tests.conftest import FIXTURES, TOY_TRAINER


def test_a_relative_sqlite_uri_becomes_absolute_and_its_artifacts_sit_beside_it(isolated):
    (isolated / "stores").mkdir()
    uri, artifacts = resolve_tracking_uri("sqlite:///stores/m.db")
    assert uri == f"sqlite:///{isolated / 'stores' / 'm.db'}"  # four slashes: absolute
    assert artifacts == (isolated / "stores" / "artifacts").as_uri()
    assert resolve_tracking_uri("sqlite:///:memory:")[0] == "sqlite:///:memory:"


def test_a_study_recorded_with_a_relative_uri_is_read_back_from_elsewhere(
    isolated, monkeypatch, capsys
):
    space = isolated / "toy.yaml"
    space.write_text(
        (FIXTURES / "toy.yaml").read_text().replace("toy_trainer.py", str(TOY_TRAINER))
    )
    assert main(["tune", "--space", str(space), "--study", "rel", "--max-trials", "1",
                 "--no-baseline", "--no-confirm", "--tracking-uri", "sqlite:///m.db",
                 "--", "--num_epochs=1"]) == 0  # fmt: skip
    meta = json.loads((isolated / "studies" / "rel" / "study.json").read_text())
    assert meta["tracking_uri"] == f"sqlite:///{isolated / 'm.db'}"
    elsewhere = isolated / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./mlruns here: the record's absolute store is read
    capsys.readouterr()
    assert main(["trials", "--workdir", str(isolated / "studies"), "--study", "rel"]) == 0
    out = capsys.readouterr().out
    assert "trial 0" in out or "0 " in out, out
