"""The emulator answers only what a Vertex client on this machine would send (issue: any web
page could make it run a command). Real requests over loopback, as a browser would send them."""

from __future__ import annotations

import http.client
import json
import stat
import time
from pathlib import Path

import pytest


def _custom_job(command: list[str], base: str = "gs://dualtune-emulator/guard") -> bytes:
    return json.dumps(
        {
            "displayName": "evil",
            "jobSpec": {
                "workerPoolSpecs": [
                    {
                        "machineSpec": {"machineType": "n1-standard-4"},
                        "replicaCount": "1",
                        "containerSpec": {"imageUri": "x", "command": command},
                    }
                ],
                "baseOutputDirectory": {"outputUriPrefix": base},
            },
        }
    ).encode()


def _post(emulator, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    host, port = emulator.url[len("http://") :].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        connection.close()


def _jobs_path(emulator) -> str:
    return f"/v1/projects/{emulator.project}/locations/{emulator.location}/customJobs"


def _listed(emulator) -> list:
    from google.cloud import aiplatform

    aiplatform.init(**emulator.init_kwargs())
    return aiplatform.CustomJob.list(filter='display_name="evil"')


def test_a_browser_style_post_is_refused_and_runs_nothing(emulator, tmp_path):
    """A page's fetch(): text/plain (no preflight), its own Origin, no token."""
    marker = tmp_path / "FILE"
    body = _custom_job(["sh", "-c", f"touch {marker}"])
    browser = {"Content-Type": "text/plain", "Origin": "http://evil.example"}
    # ...and with the token too, so each check is seen refusing on its own.
    with_token = {**browser, **emulator.headers()}
    json_token = {**emulator.headers(), "Content-Type": "application/json"}

    assert _post(emulator, _jobs_path(emulator), body, browser)[0] == 403
    assert _post(emulator, _jobs_path(emulator), body, with_token)[0] == 403
    status, answer = _post(
        emulator, _jobs_path(emulator), body, {**json_token, "Origin": "http://evil.example"}
    )
    assert (status, answer["error"]["status"]) == (403, "PERMISSION_DENIED")
    status, answer = _post(
        emulator, _jobs_path(emulator), body, {**emulator.headers(), "Content-Type": "text/plain"}
    )
    assert status == 415 and "application/json" in answer["error"]["message"]

    time.sleep(1.0)  # a job would have started its command by now
    assert not marker.exists()
    assert _listed(emulator) == []


def test_a_foreign_host_is_refused(emulator):
    headers = {**emulator.headers(), "Content-Type": "application/json", "Host": "evil.example"}
    status, answer = _post(emulator, _jobs_path(emulator), _custom_job(["true"]), headers)

    assert status == 403 and "evil.example" in answer["error"]["message"]


def test_no_token_or_a_wrong_one_is_refused(emulator):
    plain = {"Content-Type": "application/json"}
    for headers in (plain, {**plain, "Authorization": "Bearer not-the-token"}):
        status, answer = _post(emulator, _jobs_path(emulator), _custom_job(["true"]), headers)
        assert (status, answer["error"]["status"]) == (401, "UNAUTHENTICATED")


def test_the_token_file_is_the_users_alone(emulator):
    mode = stat.S_IMODE(Path(emulator.token_file).stat().st_mode)

    assert mode == 0o600
    assert len(emulator.token) >= 32


@pytest.mark.parametrize(
    "base",
    ["gs://../escaped", "gs://dualtune-emulator/../../escaped", "gs://a..b/x"],
)
def test_a_bucket_or_path_outside_storage_is_a_400(emulator, base):
    headers = {**emulator.headers(), "Content-Type": "application/json"}
    status, answer = _post(emulator, _jobs_path(emulator), _custom_job(["true"], base), headers)

    assert status == 400
    assert "bucket name" in answer["error"]["message"] or "relative" in answer["error"]["message"]
    assert not (emulator.workdir / "escaped").exists()
    assert not (emulator.workdir / "gcs" / "escaped").exists()


def test_a_gcs_env_path_outside_storage_is_a_400(emulator):
    body = json.loads(_custom_job(["true"]))
    pool = body["jobSpec"]["workerPoolSpecs"][0]
    pool["containerSpec"]["env"] = [{"name": "OUT", "value": "/gcs/../../etc/x"}]
    headers = {**emulator.headers(), "Content-Type": "application/json"}
    status, answer = _post(emulator, _jobs_path(emulator), json.dumps(body).encode(), headers)

    assert status == 400 and "env OUT" in answer["error"]["message"]


def test_storage_refuses_without_the_token_or_from_a_page(emulator):
    host, port = emulator.storage_url[len("http://") :].split(":")
    path = f"/storage/v1/b/{emulator.bucket[len('gs://') :]}/o"
    cases = [({}, 401), ({"Origin": "http://evil.example", **emulator.headers()}, 403)]
    cases.append(({**emulator.headers(), "Host": "evil.example"}, 403))
    cases.append((emulator.headers(), 200))
    for headers, expected in cases:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", path, headers=headers)
        assert connection.getresponse().status == expected, headers
        connection.close()


def test_info_needs_no_token_and_gives_none(emulator):
    host, port = emulator.url[len("http://") :].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/dualtune-emulator/info")
    answer = connection.getresponse()
    text = answer.read().decode()
    connection.close()

    assert answer.status == 200
    assert json.loads(text)["tokenFile"] == str(emulator.token_file)
    assert emulator.token not in text
