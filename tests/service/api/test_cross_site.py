"""Cross-site browser requests change nothing: JSON bodies only, other sites' writes refused."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.api.openapi import build_document

JOB = {"stage": "tensors", "iterations": 20, "N": 4, "D_in": 8, "H": 4, "D_out": 2}
SWEEP = {"name": "s", "base": JOB, "grid": {"lr": [1e-4, 1e-3]}}
# What a page on another site sends with a form or fetch, as Chromium names it.
FROM_ELSEWHERE = [
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://evil.example"},
    {"Origin": "http://localhost.evil.example"},
    {"Origin": "null"},
    {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "null", "Sec-Fetch-Site": "same-site"},
    {"Origin": "http://localhost", "Sec-Fetch-Site": "cross-site"},
]


def job_count(client: FlaskClient) -> int:
    return len(client.get("/api/v1/jobs").get_json()["jobs"])


@pytest.mark.parametrize(("path", "body"), [("/api/v1/jobs", JOB), ("/api/v1/sweeps", SWEEP)])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_body_that_is_not_declared_json_is_415(
    client: FlaskClient, path: str, body: dict, content_type: str
) -> None:
    response = client.post(path, data=json.dumps(body), content_type=content_type)
    assert response.status_code == 415
    error = response.get_json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["field"] == "Content-Type"
    assert "application/json" in error["message"]
    assert job_count(client) == 0


@pytest.mark.parametrize("headers", FROM_ELSEWHERE)
def test_writes_from_another_site_are_403_and_change_nothing(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    job_id = client.post("/api/v1/jobs", json=JOB).get_json()["id"]
    submitted = client.post("/api/v1/jobs", json=JOB, headers=headers)
    cancelled = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers)
    for response in (submitted, cancelled):
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "cross_site"
    assert job_count(client) == 1
    assert client.get(f"/api/v1/jobs/{job_id}").get_json()["status"] == "queued"
    # Reading is not refused: another site cannot read the answer anyway (no CORS headers).
    assert client.get("/api/v1/jobs", headers=headers).status_code == 200


def test_the_pages_own_requests_and_non_browser_clients_pass(client: FlaskClient) -> None:
    own = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    assert client.post("/api/v1/jobs", json=JOB, headers=own).status_code == 201
    # Chromium's own-page posts under Referrer-Policy: no-referrer: the origin is hidden.
    hidden = {"Sec-Fetch-Site": "same-origin", "Origin": "null"}
    assert client.post("/api/v1/jobs", json=JOB, headers=hidden).status_code == 201
    # curl and the CLI send neither header.
    job_id = client.post("/api/v1/jobs", json=JOB).get_json()["id"]
    typed = {"Content-Type": "application/json; charset=utf-8"}
    assert client.post("/api/v1/jobs", data=json.dumps(JOB), headers=typed).status_code == 201
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=own).status_code == 200


def test_the_document_names_the_415_and_the_cross_site_403(app: Flask) -> None:
    paths = build_document(app)["paths"]
    for path in ("/api/v1/jobs", "/api/v1/sweeps"):
        assert {"403", "415"} <= set(paths[path]["post"]["responses"])
    assert "403" in paths["/api/v1/jobs/{job_id}/cancel"]["post"]["responses"]
    assert "415" not in paths["/api/v1/jobs/{job_id}/cancel"]["post"]["responses"]
    assert "403" not in paths["/api/v1/jobs"]["get"]["responses"]
