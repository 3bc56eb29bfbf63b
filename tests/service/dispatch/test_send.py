"""The one send path: every sender sends with no write open; a first send and a re-send."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import kombu.exceptions
import pytest
import sqlalchemy as sa
from celery.signals import before_task_publish
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from service.config import Config
from service.db import make_session_factory
from service.dispatch.send import send, send_again
from service.jobs import new_job
from service.jobspec import Limits, validate_job
from service.models import Job
from service.ops.reconcile import reconcile_once
from service.sweeps.controller import control_once
from tests.conftest import make_test_app
from tests.service.api.test_api_jobs import queued_messages

GRID = {"name": "g", "base": {"stage": "optim", "iterations": 4}, "grid": {"lr": [0.1, 0.2]}}
SEARCH = {
    "name": "s",
    "base": {"stage": "optim", "iterations": 4},
    "search": {"method": "random", "n": 4, "parallel": 2, "space": {"lr": [0.1, 0.2]}},
    "fused": False,
}


def held_write(database_url: str) -> str | None:
    """What holds a write transaction open on the database right now, or None."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # Another connection takes SQLite's one write lock at once, or someone holds it.
        probe = sqlite3.connect(url.database or "", timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return None
        except sqlite3.OperationalError as error:
            return str(error)
        finally:
            probe.close()
    # PostgreSQL: another session of this database idle inside a transaction that wrote (a
    # transaction id is given at the first write), waiting on us.
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            states = connection.execute(
                sa.text(
                    "SELECT state FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                    " AND backend_xid IS NOT NULL"
                )
            ).all()
    finally:
        engine.dispose()
    return f"{len(states)} session(s) idle in a writing transaction" if states else None


@pytest.fixture
def publishes(database_url: str) -> Iterator[list[str | None]]:
    """For each message the test process publishes: what held a write as it went out."""
    seen: list[str | None] = []

    def check(**_: Any) -> None:
        seen.append(held_write(database_url))

    before_task_publish.connect(check, weak=False)
    yield seen
    before_task_publish.disconnect(check)


@pytest.mark.parametrize(
    ("path", "body", "messages"),
    [
        ("/api/v1/jobs", {"stage": "optim"}, 1),
        ("/api/v1/sweeps", {**GRID, "fused": False}, 2),
        ("/api/v1/sweeps", {**GRID, "fused": True}, 1),
    ],
)
def test_a_submission_sends_after_its_write_committed(
    client: FlaskClient,
    broker_url: str,
    publishes: list[str | None],
    path: str,
    body: dict,
    messages: int,
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 201, response.get_json()
    assert len(queued_messages(broker_url)) == messages
    assert publishes == [None] * messages


def test_the_controller_sends_its_trials_after_their_write_committed(
    app: Flask, client: FlaskClient, database_url: str, publishes: list[str | None]
) -> None:
    assert client.post("/api/v1/sweeps", json=SEARCH).status_code == 201
    factory = make_session_factory(app.extensions["trainq.engine"], writer=True)
    config = Config(database_url=database_url, broker_url="")
    assert control_once(factory, app.extensions["trainq.celery"], config, "c") == 2
    assert publishes == [None, None]


def test_the_controller_asks_the_live_capacity_with_no_write_open(
    app: Flask, client: FlaskClient, database_url: str
) -> None:
    # The live capacity is a question to the broker (LiveCapacity), and the sampler can take
    # seconds: the plan that asks both holds no write.
    body = {**SEARCH, "search": {**SEARCH["search"], "parallel": None}}
    assert client.post("/api/v1/sweeps", json=body).status_code == 201
    held: list[str | None] = []

    def capacity(queue: str) -> int:
        held.append(held_write(database_url))
        return 2

    factory = make_session_factory(app.extensions["trainq.engine"], writer=True)
    config = Config(database_url=database_url, broker_url="")
    assert control_once(factory, app.extensions["trainq.celery"], config, "c", capacity) == 2
    assert held
    assert set(held) == {None}


def test_the_reconciler_sends_again_with_no_write_open(
    app: Flask, client: FlaskClient, database_url: str, publishes: list[str | None]
) -> None:
    # Given two jobs committed by an API whose sends never went out (enqueued_at null)
    factory = make_session_factory(app.extensions["trainq.engine"], writer=True)
    with factory.begin() as session:
        jobs = [new_job(validate_job({"stage": "optim"}, Limits()), "cpu") for _ in range(2)]
        session.add_all(jobs)
        session.flush()
        ids = [job.id for job in jobs]
    # When the reconciler passes
    config = Config(database_url=database_url, broker_url="")
    # (a negative grace: jobs committed this instant count as long unsent)
    counts = reconcile_once(factory, app.extensions["trainq.celery"], config, grace_seconds=-60)
    # Then both went out, each after its write had committed
    assert counts["sent"] == 2
    assert publishes == [None, None]
    with factory() as session:
        assert None not in session.scalars(sa.select(Job.enqueued_at).where(Job.id.in_(ids)))


def test_a_first_send_leaves_the_jobs_unsent_when_the_broker_is_down(
    database_url: str, client: FlaskClient
) -> None:
    # A first send loses nothing when Redis is away: the rows stay for the reconciler.
    dead = make_test_app(database_url, "redis://127.0.0.1:1/0")
    try:
        factory = make_session_factory(dead.extensions["trainq.engine"], writer=True)
        with factory.begin() as session:
            job = new_job(validate_job({"stage": "optim"}, Limits()), "cpu")
            session.add(job)
        assert send(dead.extensions["trainq.celery"], factory, [(job.id, "cpu")]) is None
        with factory() as session:
            assert session.get_one(Job, job.id).enqueued_at is None
        # Sending again (the reconciler, a worker's hand-back) says it failed instead.
        with pytest.raises(kombu.exceptions.OperationalError):
            send_again(dead.extensions["trainq.celery"], factory, [(job.id, "cpu")])
    finally:
        dead.extensions["trainq.engine"].dispose()


def test_sending_again_stamps_jobs_sent_before(
    app: Flask, broker_url: str, database_url: str
) -> None:
    factory = make_session_factory(app.extensions["trainq.engine"], writer=True)
    with factory.begin() as session:
        job = new_job(validate_job({"stage": "optim"}, Limits()), "cpu")
        session.add(job)
    celery = app.extensions["trainq.celery"]
    first = send(celery, factory, [(job.id, "cpu")])
    assert first is not None
    # A first send never moves a stamp already there; sending again always does.
    assert send(celery, factory, [(job.id, "cpu")]) is not None
    with factory() as session:
        assert session.get_one(Job, job.id).enqueued_at == first
    again = send_again(celery, factory, [(job.id, "cpu")])
    assert again.stamped_at >= first
    assert again.batches == 0
    with factory() as session:
        assert session.get_one(Job, job.id).enqueued_at == again.stamped_at
    assert len(queued_messages(broker_url)) == 3
