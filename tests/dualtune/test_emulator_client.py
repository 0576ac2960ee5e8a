"""The edge: an emulator URL becomes plain VertexSettings (endpoints, token file, a short poll),
recorded without the token, and followed from the record where nothing else is given."""

from __future__ import annotations

import json

import pytest

from backends.vertex.settings import VertexSettings
from dualtune.api import backend_of
from dualtune.emulator_client import EMULATOR_ENV, POLL_S, emulator_settings
from tests.backends import test_vertex
from trialkit.errors import UserError

# The vertex tests' session emulator, shared.
emulator, vertex_env = test_vertex.emulator, test_vertex.vertex_env


def test_an_emulator_url_becomes_plain_settings(vertex_env):
    settings = emulator_settings(vertex_env.url + "/")

    assert (settings.project, settings.region) == (vertex_env.project, vertex_env.location)
    assert settings.staging_bucket == vertex_env.bucket
    assert settings.api_endpoint == vertex_env.url
    assert settings.storage_endpoint == vertex_env.storage_url
    assert settings.token_file == str(vertex_env.token_file)
    assert settings.poll_s == POLL_S
    recorded = json.dumps(settings.record())
    assert vertex_env.token not in recorded and str(vertex_env.token_file) in recorded


def test_flags_win_over_what_the_emulator_says(vertex_env):
    given = VertexSettings(project="mine", staging_bucket="gs://mine", poll_s=2.0)
    settings = emulator_settings(vertex_env.url, given)

    assert (settings.project, settings.staging_bucket, settings.poll_s) == (
        "mine",
        "gs://mine",
        2.0,
    )
    assert settings.region == vertex_env.location


def test_the_record_is_followed_unless_a_place_is_given(vertex_env):
    recorded = emulator_settings(vertex_env.url).record()

    again = VertexSettings().resolve(recorded)
    assert again.api_endpoint == vertex_env.url and again.token_file == recorded["token_file"]
    elsewhere = VertexSettings(project="p", region="europe-west4").resolve(recorded)
    assert elsewhere.api_endpoint is None and elsewhere.token_file is None
    assert elsewhere.staging_bucket == recorded["staging_bucket"]


def test_an_older_record_asks_for_the_emulator_again():
    old = {"project": "p", "region": "r", "staging_bucket": "gs://b", "emulator": "http://x:1"}

    with pytest.raises(UserError, match="give --emulator http://x:1 again"):
        VertexSettings().resolve(old)


def test_the_environment_variable_points_unplaced_settings_at_the_emulator(vertex_env, monkeypatch):
    monkeypatch.setenv(EMULATOR_ENV, vertex_env.url)

    _, settings = backend_of("vertex")
    assert settings.api_endpoint == vertex_env.url
    _, placed = backend_of(VertexSettings(project="p", region="r", staging_bucket="gs://b"))
    assert placed.api_endpoint is None


def test_a_missing_token_file_is_one_line(tmp_path):
    from backends.vertex.settings import bearer_credentials

    with pytest.raises(UserError, match=r"token file .*nope: cannot read it"):
        bearer_credentials(str(tmp_path / "nope"))
