"""OWASP API Security Top 10 (2023), the items that apply: each asserts the status code and that
nothing changed in the database.

API7 (SSRF) does not apply: no endpoint fetches a URL it is given. API10 (unsafe consumption)
is the broker's side: tests/faults/test_security.py holds that a pickled message is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from service.db import make_session_factory
from service.models import Job, JobTag, Sweep
from service.tokens import digest
from tests.support.api_process import ApiProcess
from tests.support.scoped_tokens import SECRETS, SWEEP, bearer, make_scoped_app


@pytest.fixture
def guarded_app(database_url: str, broker_url: str) -> Iterator[Flask]:
    """Four scoped tokens, a small per-owner cap and rate, and one job and sweep of Alice's."""
    app = make_scoped_app(
        database_url,
        broker_url,
        max_active_jobs_per_owner=5,
        submit_rate_limit="20/minute",
    )
    client = app.test_client()
    assert (
        client.post(
            "/api/v1/jobs", json={"stage": "nn", "tags": ["a"]}, headers=bearer("alice")
        ).status_code
        == 201
    )
    assert client.post("/api/v1/sweeps", json=SWEEP, headers=bearer("alice")).status_code == 201
    yield app
    app.extensions["trainq.engine"].dispose()


@pytest.fixture
def api(guarded_app: Flask) -> FlaskClient:
    """A client of the guarded app."""
    return guarded_app.test_client()


def snapshot(app: Flask) -> tuple[Any, ...]:
    """Every row a request could change, with every state column."""
    factory = make_session_factory(app.extensions["trainq.engine"])
    with factory() as session:
        jobs = session.execute(
            sa.select(
                Job.id, Job.status, Job.owner, Job.attempts, Job.worker, Job.cancel_requested
            ).order_by(Job.id)
        ).all()
        sweeps = session.execute(
            sa.select(Sweep.id, Sweep.owner, Sweep.cancel_requested).order_by(Sweep.id)
        ).all()
        tags = session.scalar(sa.select(sa.func.count()).select_from(JobTag))
    return tuple(map(tuple, jobs)), tuple(map(tuple, sweeps)), tags


def test_api1_object_level_token_a_cannot_cancel_bs_job_or_sweep(
    api: FlaskClient, guarded_app: Flask
) -> None:
    before = snapshot(guarded_app)
    for path in ("/api/v1/jobs/1/cancel", "/api/v1/sweeps/1/cancel"):
        response = api.post(path, headers=bearer("bob"))
        assert response.status_code == 403, path
        assert response.get_json()["error"]["code"] == "forbidden"
    assert snapshot(guarded_app) == before


def test_api2_authentication_no_wrong_or_misplaced_token_is_401(
    api: FlaskClient, guarded_app: Flask
) -> None:
    before = snapshot(guarded_app)
    attempts = [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Basic {SECRETS['ops']}"},
        {"Authorization": f"Bearer {digest(SECRETS['ops']).hex()}"},  # the stored digest itself
        {"Authorization": "Bearer "},
    ]
    for headers in attempts:
        assert api.post("/api/v1/jobs", json={"stage": "nn"}, headers=headers).status_code == 401
        assert api.post("/api/v1/jobs/1/cancel", headers=headers).status_code == 401
        assert api.get("/api/v1/jobs", headers=headers).status_code == 401
    # A token in the query string is not a credential (it would end up in logs).
    assert api.get(f"/api/v1/jobs?token={SECRETS['ops']}").status_code == 401
    assert api.get("/metrics").status_code == 401
    assert snapshot(guarded_app) == before


@pytest.mark.parametrize("field", ["status", "attempts", "owner", "worker", "cancel_requested"])
def test_api3_property_level_a_client_cannot_set_state_fields(
    api: FlaskClient, guarded_app: Flask, field: str
) -> None:
    before = snapshot(guarded_app)
    value: Any = {"status": "succeeded", "attempts": 0, "owner": "ops", "worker": "w@h"}.get(
        field, True
    )
    job = api.post("/api/v1/jobs", json={"stage": "nn", field: value}, headers=bearer("alice"))
    assert job.status_code == 422
    assert job.get_json()["error"]["field"] == field
    for sweep in (
        {**SWEEP, "base": {**SWEEP["base"], field: value}},
        {**SWEEP, "grid": {field: [value]}},
        {**SWEEP, field: value},
    ):
        response = api.post("/api/v1/sweeps", json=sweep, headers=bearer("alice"))
        assert response.status_code == 422, sweep
    assert snapshot(guarded_app) == before


def test_api3_property_level_responses_expose_no_secret(api: FlaskClient) -> None:
    bodies = [
        api.get("/api/v1/jobs/1", headers=bearer("viewer")).get_data(as_text=True),
        api.get("/api/v1/sweeps/1", headers=bearer("viewer")).get_data(as_text=True),
        api.get("/health").get_data(as_text=True),
        api.get("/openapi.json").get_data(as_text=True),
    ]
    for secret in SECRETS.values():
        for body in bodies:
            assert secret not in body
            assert digest(secret).hex() not in body


def test_api4_resource_consumption_caps_refuse_and_write_nothing(
    api: FlaskClient, guarded_app: Flask
) -> None:
    before = snapshot(guarded_app)
    # Alice holds 3 active jobs of her cap of 5: a sweep of 4 is refused whole.
    big = {**SWEEP, "grid": {"lr": [1e-6, 1e-5, 1e-4, 1e-3]}}
    refused = api.post("/api/v1/sweeps", json=big, headers=bearer("alice"))
    assert refused.status_code == 429
    assert refused.get_json()["error"]["setting"] == "TRAINQ_MAX_ACTIVE_JOBS_PER_OWNER"
    too_large = api.post(
        "/api/v1/jobs",
        data=b'{"stage": "nn", "name": "' + b"x" * 2_000_000 + b'"}',
        content_type="application/json",
        headers=bearer("alice"),
    )
    assert too_large.status_code == 413
    work = api.post(
        "/api/v1/jobs",
        json={"stage": "nn", "iterations": 100_000, "N": 100_000, "D_in": 100_000},
        headers=bearer("alice"),
    )
    assert work.status_code == 422
    assert api.get("/api/v1/jobs?limit=100000", headers=bearer("alice")).status_code == 422
    assert snapshot(guarded_app) == before


def test_api4_and_api6_floods_of_submissions_get_429(api: FlaskClient, guarded_app: Flask) -> None:
    # Bob floods the submission flow: past 20 a minute (2 used by the fixture's token Alice's
    # budget, not his) he gets 429 with Retry-After, and his last request wrote nothing.
    codes = []
    for _ in range(25):
        response = api.post(
            "/api/v1/jobs", json={"stage": "nn", "iterations": 1}, headers=bearer("bob")
        )
        codes.append(response.status_code)
        if response.status_code == 201:
            api.post(f"/api/v1/jobs/{response.get_json()['id']}/cancel", headers=bearer("bob"))
    assert codes.count(201) == 20
    assert set(codes[20:]) == {429}
    before = snapshot(guarded_app)
    response = api.post("/api/v1/jobs", json={"stage": "nn"}, headers=bearer("bob"))
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert snapshot(guarded_app) == before


def test_api5_function_level_read_cannot_write(api: FlaskClient, guarded_app: Flask) -> None:
    before = snapshot(guarded_app)
    for path, body in (
        ("/api/v1/jobs", {"stage": "nn"}),
        ("/api/v1/sweeps", SWEEP),
        ("/api/v1/jobs/1/cancel", None),
        ("/api/v1/sweeps/1/cancel", None),
    ):
        response = api.post(path, json=body, headers=bearer("viewer"))
        assert response.status_code == 403, path
    # Methods the API does not have are refused, not routed to something else.
    assert api.delete("/api/v1/jobs/1", headers=bearer("ops")).status_code == 405
    assert (
        api.put("/api/v1/jobs/1", json={"status": "queued"}, headers=bearer("ops")).status_code
        == 405
    )
    assert snapshot(guarded_app) == before


def test_api8_misconfiguration_headers_and_errors(api: FlaskClient, guarded_app: Flask) -> None:
    before = snapshot(guarded_app)
    for path, headers in (
        ("/", {}),
        ("/api/v1/jobs", bearer("viewer")),
        ("/api/v1/jobs/999", bearer("viewer")),
        ("/openapi.json", {}),
        ("/nowhere", {}),
    ):
        response = api.get(path, headers=headers)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Referrer-Policy"] == "no-referrer", path
        assert "Access-Control-Allow-Origin" not in response.headers, path
        assert "Server" not in response.headers, path
    assert "Content-Security-Policy" in api.get("/").headers
    assert api.get("/api/v1/jobs", headers=bearer("viewer")).headers["Cache-Control"] == "no-store"
    # A malformed body is a JSON 400 that shows no traceback.
    bad = api.post(
        "/api/v1/jobs", data=b"{", content_type="application/json", headers=bearer("alice")
    )
    assert bad.status_code == 400
    assert "Traceback" not in bad.get_data(as_text=True)
    assert snapshot(guarded_app) == before


def test_api8_gunicorn_names_no_version(database_url: str, broker_url: str, tmp_path: Path) -> None:
    server = ApiProcess(database_url, broker_url, tmp_path, workers=1).start()
    try:
        response = requests.get(f"{server.url}/api/v1/jobs", timeout=10)
        assert response.status_code == 200
        assert response.headers["Server"] == "gunicorn"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        server.stop()


def test_api9_inventory_every_api_route_is_documented(guarded_app: Flask) -> None:
    document = guarded_app.test_client().get("/openapi.json").get_json()
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    served = set()
    for rule in guarded_app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = rule.rule.replace("<int:", "{").replace(">", "}")
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                served.add((method.lower(), path))
    assert served
    assert served <= documented
