"""GET /metrics: Prometheus text from prometheus_client, checked against the database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from service.db import make_session_factory
from service.models import Job
from service.models.base import utcnow
from service.ops.metrics import record_reconcile_pass, redis_client
from service.tokens import digest
from tests.conftest import make_test_app
from tests.support.api_process import ApiProcess
from tests.support.processes import ROOT
from tests.support.waiting import wait_until

VIEWER = {"Authorization": "Bearer viewer-secret"}
ENTRIES = (
    "viewer:read:sha256:" + digest("viewer-secret").hex(),
    "alice:submit:sha256:" + digest("alice-secret").hex(),
)
ALICE = {"Authorization": "Bearer alice-secret"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape /metrics with a read token and parse it."""
    response = client.get("/metrics", headers=VIEWER)
    assert response.status_code == 200, response.get_data()
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return samples(response.get_data(as_text=True))


@pytest.fixture
def metered(database_url: str, broker_url: str) -> Iterator[Flask]:
    """The app with a read and a submit token."""
    app = make_test_app(database_url, broker_url, api_tokens=ENTRIES)
    yield app
    app.extensions["trainq.engine"].dispose()


def test_metrics_need_a_read_token(metered: Flask) -> None:
    client = metered.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers=ALICE).status_code == 200  # submit includes read
    document = client.get("/openapi.json").get_json()
    assert document["paths"]["/metrics"]["get"]["x-trainq-scope"] == "read"


def test_figures_match_the_database_and_the_broker(metered: Flask, broker_url: str) -> None:
    # Given six submitted jobs, moved by hand into several states
    client = metered.test_client()
    ids = [
        client.post(
            "/api/v1/jobs", json={"stage": "nn", "device": device}, headers=ALICE
        ).get_json()["id"]
        for device in ("cpu", "cpu", "cpu", "cpu", "cuda", "auto")
    ]
    now = utcnow()
    factory = make_session_factory(metered.extensions["trainq.engine"])
    with factory() as session, session.begin():
        session.execute(
            sa.update(Job)
            .where(Job.id == ids[0])
            .values(status="succeeded", steps_done=500, attempts=3)
        )
        session.execute(
            sa.update(Job).where(Job.id == ids[1]).values(
                status="running", steps_done=120, attempts=1, worker="cpu@a",
                lease_expires_at=now + timedelta(seconds=10),
            )
        )  # fmt: skip
        session.execute(
            sa.update(Job).where(Job.id == ids[2]).values(
                status="running", steps_done=7, attempts=2, worker="cpu@b",
                lease_expires_at=now - timedelta(seconds=3),
            )
        )  # fmt: skip
        session.execute(
            sa.update(Job).where(Job.id == ids[3]).values(created_at=now - timedelta(seconds=90))
        )
    # When Prometheus scrapes
    figures = scrape(client)
    # Then every figure is what the database and Redis hold
    with factory() as session:
        by_status_queue = dict(
            ((s, q), n)
            for s, q, n in session.execute(
                sa.select(Job.status, Job.queue, sa.func.count()).group_by(Job.status, Job.queue)
            )
        )
    for (status, queue), count in by_status_queue.items():
        assert figures[("trainq_jobs", (("queue", queue), ("status", status)))] == count
    assert figures[("trainq_jobs", (("queue", "gpu"), ("status", "failed")))] == 0
    assert sum(v for (name, _), v in figures.items() if name == "trainq_jobs") == 6
    assert figures[("trainq_training_steps_total", ())] == 627
    assert figures[("trainq_job_retries_total", ())] == 3
    assert figures[("trainq_jobs_lease_expired", ())] == 1
    assert figures[("trainq_workers_busy", (("queue", "cpu"),))] == 1
    beat = figures[("trainq_worker_last_heartbeat_timestamp_seconds", (("worker", "cpu@a"),))]
    assert beat == pytest.approx((now + timedelta(seconds=10)).timestamp() - 12.0, abs=1e-3)
    assert 89 <= figures[("trainq_oldest_queued_job_age_seconds", (("queue", "cpu"),))] < 150
    broker = redis.Redis.from_url(broker_url)
    assert figures[("trainq_queue_messages", (("queue", "cpu"),))] == broker.llen("cpu") == 5
    assert figures[("trainq_queue_messages", (("queue", "gpu"),))] == broker.llen("gpu") == 1
    assert figures[("trainq_source_up", (("source", "database"),))] == 1
    assert figures[("trainq_source_up", (("source", "redis"),))] == 1


def test_requests_are_counted_by_route_and_status(metered: Flask) -> None:
    client = metered.test_client()
    key = (
        "trainq_http_requests_total",
        (("method", "GET"), ("route", "/api/v1/jobs/<int:job_id>"), ("status", "404")),
    )
    before = scrape(client).get(key, 0.0)
    for job_id in (7, 8, 9):
        assert client.get(f"/api/v1/jobs/{job_id}", headers=VIEWER).status_code == 404
    after = scrape(client)
    assert after[key] == before + 3
    count = after[(
        "trainq_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/api/v1/jobs/<int:job_id>"), ("status", "404")),
    )]  # fmt: skip
    assert count == after[key]


def test_reconciler_passes_and_lag_come_from_redis(metered: Flask, broker_url: str) -> None:
    client = metered.test_client()
    record_reconcile_pass(redis_client(broker_url), {"resent": 2, "failed": 1, "sent": 4}, 0.25)
    record_reconcile_pass(redis_client(broker_url), None, 0.5)
    figures = scrape(client)
    assert figures[("trainq_reconciler_passes_total", (("outcome", "ok"),))] == 1
    assert figures[("trainq_reconciler_passes_total", (("outcome", "failed"),))] == 1
    assert figures[("trainq_leases_expired_total", ())] == 3
    assert figures[("trainq_reconciler_last_pass_seconds", ())] == 0.5
    assert 0 <= figures[("trainq_reconciler_lag_seconds", ())] < 30


def test_a_down_broker_is_reported_not_fatal(database_url: str) -> None:
    app = make_test_app(database_url, "redis://127.0.0.1:1/0")
    try:
        response = app.test_client().get("/metrics")
        assert response.status_code == 200
        figures = samples(response.get_data(as_text=True))
        assert figures[("trainq_source_up", (("source", "redis"),))] == 0
        assert figures[("trainq_source_up", (("source", "database"),))] == 1
    finally:
        app.extensions["trainq.engine"].dispose()


def test_counts_add_up_across_gunicorn_processes(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    # Given the API under gunicorn with two processes sharing a metrics folder
    folder = tmp_path / "prometheus"
    server = ApiProcess(
        database_url, broker_url, tmp_path, workers=2,
        extra_env={"PROMETHEUS_MULTIPROC_DIR": str(folder)},
    ).start()  # fmt: skip
    sent = 0
    try:
        # When requests keep coming (each on a new connection) until both processes served some
        def both_served() -> bool:
            nonlocal sent
            for _ in range(5):
                assert requests.get(f"{server.url}/api/v1/jobs?limit=1", timeout=10).ok
                sent += 1
            return len(list(folder.glob("counter_*.db"))) >= 2

        wait_until(both_served, 60, server.log_tail, interval=0)
        # Then any process's scrape counts every request
        key = (
            "trainq_http_requests_total",
            (("method", "GET"), ("route", "/api/v1/jobs"), ("status", "200")),
        )
        for _ in range(4):
            figures = samples(requests.get(f"{server.url}/metrics", timeout=10).text)
            assert figures[key] == sent
    finally:
        server.stop()


def test_a_running_reconciler_records_its_passes(
    metered: Flask, database_url: str, broker_url: str, tmp_path: Path
) -> None:
    # Given `trainq reconcile` running against this database and Redis
    env = {
        **os.environ,
        "TRAINQ_DATABASE_URL": database_url,
        "TRAINQ_BROKER_URL": broker_url,
        "TRAINQ_RECONCILE_SECONDS": "0.2",
    }
    with open(tmp_path / "reconcile.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "reconcile"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    client = metered.test_client()
    try:
        # Then its passes add up in /metrics, and the lag stays within a few passes
        def passes() -> float:
            return scrape(client).get(("trainq_reconciler_passes_total", (("outcome", "ok"),)), 0)

        wait_until(lambda: passes() >= 3, 60, lambda: (tmp_path / "reconcile.log").read_text())
        assert scrape(client)[("trainq_reconciler_lag_seconds", ())] < 5
    finally:
        process.terminate()
        process.wait(20)
