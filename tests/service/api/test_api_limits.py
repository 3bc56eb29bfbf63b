"""Limits per client: submissions per minute in the shared Redis, and the per-owner job cap."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from service.config import Config
from service.db import make_session_factory
from service.models import Job, Sweep
from service.ops.redis_server import free_port
from service.tokens import digest
from tests.conftest import make_test_app

SECRETS = {"alice": "alice-secret", "bob": "bob-secret"}
ENTRIES = tuple(f"{name}:submit:sha256:{digest(s).hex()}" for name, s in SECRETS.items())
SWEEP = {"name": "s", "base": {"stage": "nn", "iterations": 5}, "grid": {"lr": [1e-6, 1e-5]}}


def bearer(name: str) -> dict[str, str]:
    """The Authorization header of one configured token."""
    return {"Authorization": f"Bearer {SECRETS[name]}"}


@pytest.fixture
def apps(database_url: str, broker_url: str) -> Iterator[Any]:
    """Makes apps on this test's database and Redis; disposes of them after."""
    made: list[Flask] = []

    def make(**settings: Any) -> Flask:
        app = make_test_app(database_url, broker_url, **settings)
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["trainq.engine"].dispose()


def counts(app: Flask) -> tuple[int, int, list[str]]:
    """Jobs, sweeps, and the jobs' statuses."""
    factory = make_session_factory(app.extensions["trainq.engine"])
    with factory() as session:
        jobs = session.scalar(sa.select(sa.func.count()).select_from(Job)) or 0
        sweeps = session.scalar(sa.select(sa.func.count()).select_from(Sweep)) or 0
        statuses = list(session.scalars(sa.select(Job.status).order_by(Job.id)))
    return jobs, sweeps, statuses


def test_defaults_are_far_above_one_user() -> None:
    config = Config.from_env()
    assert config.submit_rate_limit == "6000/minute"
    assert config.max_active_jobs_per_owner == 100_000


def test_submissions_past_the_rate_get_429_with_retry_after(apps: Any) -> None:
    app = apps(api_tokens=ENTRIES, submit_rate_limit="3/minute")
    client = app.test_client()
    assert client.post("/api/v1/sweeps", json=SWEEP, headers=bearer("alice")).status_code == 201
    for _ in range(2):
        ok = client.post("/api/v1/jobs", json={"stage": "nn"}, headers=bearer("alice"))
        assert ok.status_code == 201
    before = counts(app)
    refused = client.post("/api/v1/jobs", json={"stage": "nn"}, headers=bearer("alice"))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    error = refused.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert error["setting"] == "TRAINQ_SUBMIT_RATE_LIMIT"
    assert client.post("/api/v1/sweeps", json=SWEEP, headers=bearer("alice")).status_code == 429
    assert counts(app) == before
    # Reading is not limited, and another token has its own budget.
    assert client.get("/api/v1/jobs", headers=bearer("alice")).status_code == 200
    assert (
        client.post("/api/v1/jobs", json={"stage": "nn"}, headers=bearer("bob")).status_code == 201
    )


def test_the_count_is_shared_by_every_process_through_redis(apps: Any) -> None:
    # Two apps stand for two gunicorn processes: the second sees the first one's submissions.
    first = apps(submit_rate_limit="2/minute").test_client()
    second = apps(submit_rate_limit="2/minute").test_client()
    assert first.post("/api/v1/jobs", json={"stage": "nn"}).status_code == 201
    assert second.post("/api/v1/jobs", json={"stage": "nn"}).status_code == 201
    assert first.post("/api/v1/jobs", json={"stage": "nn"}).status_code == 429
    assert second.post("/api/v1/jobs", json={"stage": "nn"}).status_code == 429


def test_a_submission_is_accepted_when_the_limits_redis_is_down(database_url: str) -> None:
    # Nothing accepted is dropped: without Redis the job is kept for the reconciler to send.
    app = make_test_app(database_url, f"redis://127.0.0.1:{free_port()}/0")
    try:
        response = app.test_client().post("/api/v1/jobs", json={"stage": "nn"})
        assert response.status_code == 201
        assert response.get_json()["enqueued_at"] is None
        assert counts(app)[0] == 1
    finally:
        app.extensions["trainq.engine"].dispose()


def test_an_owner_past_its_active_cap_gets_429_naming_it(apps: Any) -> None:
    app = apps(api_tokens=ENTRIES, max_active_jobs_per_owner=3)
    client = app.test_client()
    assert client.post("/api/v1/sweeps", json=SWEEP, headers=bearer("alice")).status_code == 201
    first = client.post("/api/v1/jobs", json={"stage": "nn"}, headers=bearer("alice")).get_json()
    before = counts(app)
    refused = client.post("/api/v1/jobs", json={"stage": "nn"}, headers=bearer("alice"))
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "too_many_active_jobs"
    assert "TRAINQ_MAX_ACTIVE_JOBS_PER_OWNER" in error["message"]
    assert (error["active"], error["cap"]) == (3, 3)
    assert client.post("/api/v1/sweeps", json=SWEEP, headers=bearer("alice")).status_code == 429
    assert counts(app) == before
    # Another owner is not held back, and a finished job frees its place.
    assert client.post("/api/v1/sweeps", json=SWEEP, headers=bearer("bob")).status_code == 201
    cancel = client.post(f"/api/v1/jobs/{first['id']}/cancel", headers=bearer("alice"))
    assert cancel.status_code == 200
    again = client.post("/api/v1/jobs", json={"stage": "nn"}, headers=bearer("alice"))
    assert again.status_code == 201


def test_without_tokens_the_cap_counts_every_ownerless_job(apps: Any) -> None:
    client = apps(max_active_jobs_per_owner=2).test_client()
    assert client.post("/api/v1/sweeps", json=SWEEP).status_code == 201
    refused = client.post("/api/v1/jobs", json={"stage": "nn"})
    assert refused.status_code == 429
    assert refused.get_json()["error"]["setting"] == "TRAINQ_MAX_ACTIVE_JOBS_PER_OWNER"


def test_concurrent_submissions_of_one_owner_stop_exactly_at_the_cap(apps: Any) -> None:
    # Given an owner with room for 4 jobs, and 12 submissions of it sent at the same moment
    app = apps(api_tokens=ENTRIES, max_active_jobs_per_owner=4)
    start = threading.Barrier(12)

    def submit(_: int) -> int:
        client = app.test_client()
        start.wait()
        return client.post(
            "/api/v1/jobs", json={"stage": "nn"}, headers=bearer("alice")
        ).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = sorted(pool.map(submit, range(12)))
    # Then each counted the others' committed jobs: exactly 4 taken, the rest refused
    assert statuses == [201] * 4 + [429] * 8
    assert counts(app)[2] == ["queued"] * 4
