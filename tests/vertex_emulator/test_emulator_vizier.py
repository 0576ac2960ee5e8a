"""With the vizier extra, the emulator's ALGORITHM_UNSPECIFIED is Open Source Vizier's GP-UCB-PE
(what the Vizier service runs for it), and the emulator says so. One real GP suggestion."""

from __future__ import annotations

import json
import urllib.request

import pytest

from trialkit.vizier_designer import available
from vertex_emulator import start
from vertex_emulator.emulator import _settings_text
from vertex_emulator.specs import CATEGORICAL, DISCRETE, DOUBLE, INTEGER, LOG, Param
from vertex_emulator.suggest import VizierSuggester, make_suggester

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="the vizier extra is not installed"),
]


def test_the_emulator_reports_vizier_as_its_bayesian_designer(tmp_path):
    with start(workdir=tmp_path / "emulator") as em:
        with urllib.request.urlopen(f"{em.url}/dualtune-emulator/info", timeout=10) as answer:
            info = json.loads(answer.read())
        text = _settings_text(em)
    assert info["bayesianDesigner"].startswith("Open Source Vizier 0.1.24 GP-UCB-PE")
    assert f"ALGORITHM_UNSPECIFIED) suggestions: {info['bayesianDesigner']}" in text


def test_vizier_suggestions_respect_types_bounds_and_conditions(tmp_path):
    dropout = Param("dropout", DISCRETE, values=(0.1, 0.2))
    params = [
        Param("units", INTEGER, 1, 8),
        Param("act", CATEGORICAL, values=("relu", "tanh"), children=((("tanh",), dropout),)),
        Param("lr", DOUBLE, 1e-3, 1e-1, scale=LOG),
    ]
    suggester = make_suggester(0, params, "loss", True, 7, tmp_path)
    assert isinstance(suggester, VizierSuggester)
    for trial_id in ("1", "2"):  # the centre, then a Gaussian-process suggestion
        values = suggester.suggest(trial_id)
        assert isinstance(values["units"], int) and 1 <= values["units"] <= 8
        assert values["act"] in ("relu", "tanh") and 1e-3 <= values["lr"] <= 1e-1
        assert ("dropout" in values) == (values["act"] == "tanh")
        suggester.tell(trial_id, values["lr"] + values["units"] / 10)
    completed = suggester.designer._designer._all_completed_trials
    assert len(completed) == 2 and all("dropout" in t.parameters for t in completed)
