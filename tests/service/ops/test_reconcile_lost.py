"""The reconciler finds messages Redis lost, and only those (read as JSON, never unpickled)."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import redis
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient

from service.broker import make_celery
from service.config import Config
from service.db import make_session_factory, session_scope
from service.models import Job, JobStatus, Sweep
from service.models.base import utcnow
from service.ops.queued_messages import (
    UNACKED_INDEX_KEY,
    UNACKED_KEY,
    job_ids_in_broker,
    job_ids_of,
)
from service.ops.reconcile import find_lost_messages, reconcile_once
from tests.support.waiting import wait_until


def lost_at_once(app: Flask, broker_url: str) -> tuple[so.sessionmaker[so.Session], Config]:
    """The app's sessions, and a config under which a queued job missing from Redis is lost."""
    config = Config.from_env(
        database_url=app.config["TRAINQ"].database_url,
        broker_url=broker_url,
        lost_message_seconds=0,
    )
    return make_session_factory(app.extensions["trainq.engine"]), config


def submit_fused_sweep(client: FlaskClient) -> None:
    """POST a fused sweep of 6 jobs, sent as batch messages (the planner splits none here)."""
    response = client.post(
        "/api/v1/sweeps",
        json={"name": "f", "base": {"stage": "optim"}, "grid": {"seed": [1, 2, 3, 4, 5, 6]},
              "fused": True},
    )  # fmt: skip
    assert response.status_code == 201, response.get_json()


def test_queued_messages_are_present_and_a_flushed_queue_is_lost(
    app: Flask, client: FlaskClient, broker_url: str
) -> None:
    ids = [client.post("/api/v1/jobs", json={"stage": "nn"}).get_json()["id"] for _ in range(3)]
    sent_by = utcnow()
    factory, config = lost_at_once(app, broker_url)
    # (the clock past every send, so each job is old enough to count as lost)
    wait_until(lambda: utcnow() > sent_by, 5, "the clock to move on")
    # Given every message in its queue: nothing is lost
    assert find_lost_messages(factory, config, utcnow()) == []
    # Given one message delivered to a worker just now (in kombu's unacked hash): still not lost
    client_redis = redis.Redis.from_url(broker_url)
    raw = client_redis.rpop("cpu")
    client_redis.hset(UNACKED_KEY, "tag-1", json.dumps([json.loads(raw), "", "cpu"]))
    client_redis.zadd(UNACKED_INDEX_KEY, {"tag-1": time.time() + 60})
    assert find_lost_messages(factory, config, utcnow()) == []
    # Given that delivery long past and its job still queued: its worker died holding it
    client_redis.zadd(UNACKED_INDEX_KEY, {"tag-1": time.time() - 3600})
    held = [job_id for job_id, _ in find_lost_messages(factory, config, utcnow())]
    assert held == job_ids_of(raw)
    # When Redis loses everything
    client_redis.flushdb()
    client_redis.close()
    # Then every queued job is found lost
    assert sorted(job_id for job_id, _ in find_lost_messages(factory, config, utcnow())) == ids


def test_job_ids_of_reads_only_json_training_messages() -> None:
    body = json.dumps([[42], {}, {}]).encode()
    message = {
        "body": base64.b64encode(body).decode(),
        "content-type": "application/json",
        "headers": {"task": "trainq.train_job"},
        "properties": {"body_encoding": "base64"},
    }
    assert job_ids_of(json.dumps(message)) == [42]
    assert job_ids_of(json.dumps([message, "", "cpu"])) == [42]
    assert (
        job_ids_of(json.dumps({**message, "content-type": "application/x-python-serialize"})) == []
    )
    assert job_ids_of(json.dumps({**message, "headers": {"task": "other"}})) == []
    assert job_ids_of(b"\x80\x04garbage") == []


def test_job_ids_of_reads_every_id_of_a_batch_message() -> None:
    body = json.dumps([[[7, 8, 9]], {}, {}]).encode()
    message = {
        "body": base64.b64encode(body).decode(),
        "content-type": "application/json",
        "headers": {"task": "trainq.train_batch"},
        "properties": {"body_encoding": "base64"},
    }
    assert job_ids_of(json.dumps(message)) == [7, 8, 9]
    assert job_ids_of(json.dumps([message, "", "cpu"])) == [7, 8, 9]
    assert (
        job_ids_of(json.dumps({**message, "content-type": "application/x-python-serialize"})) == []
    )
    # A batch whose list holds something other than ids is not read at all.
    bad = json.dumps([[[7, "x"]], {}, {}]).encode()
    assert job_ids_of(json.dumps({**message, "body": base64.b64encode(bad).decode()})) == []


def test_a_fused_sweeps_batch_messages_are_present_and_a_flushed_queue_is_lost(
    app: Flask, client: FlaskClient, broker_url: str
) -> None:
    # Given a fused sweep of 6 jobs, sent as batch messages (the planner splits none here)
    submit_fused_sweep(client)
    client_redis = redis.Redis.from_url(broker_url)
    queued = client_redis.lrange("cpu", 0, -1)
    assert [json.loads(raw)["headers"]["task"] for raw in queued] == ["trainq.train_batch"]
    factory, config = lost_at_once(app, broker_url)
    time.sleep(0.01)
    ids = sorted(job_ids_of(queued[0]))
    assert len(ids) == 6
    # Then every job id of the batch is in the broker: nothing is lost
    assert job_ids_in_broker(broker_url, 60) == set(ids)
    assert find_lost_messages(factory, config, utcnow()) == []
    # Given the batch delivered to a worker just now: still not lost
    raw = client_redis.rpop("cpu")
    client_redis.hset(UNACKED_KEY, "tag-1", json.dumps([json.loads(raw), "", "cpu"]))
    client_redis.zadd(UNACKED_INDEX_KEY, {"tag-1": time.time() + 60})
    assert find_lost_messages(factory, config, utcnow()) == []
    # When Redis loses everything, then every job of the batch is found lost
    client_redis.flushdb()
    client_redis.close()
    assert sorted(job_id for job_id, _ in find_lost_messages(factory, config, utcnow())) == ids


def queued_messages(client_redis: redis.Redis) -> list[tuple[str, list[int]]]:
    """(task, job ids) of every message in the cpu queue."""
    return [
        (json.loads(raw)["headers"]["task"], job_ids_of(raw))
        for raw in client_redis.lrange("cpu", 0, -1)
    ]


def test_lost_and_expired_fused_jobs_are_resent_as_batches_and_others_singly(
    app: Flask, client: FlaskClient, broker_url: str
) -> None:
    # Given a fused sweep of 6 jobs and one job of its own
    submit_fused_sweep(client)
    fused_ids = sorted(job["id"] for job in client.get("/api/v1/jobs").get_json()["jobs"])
    single = client.post("/api/v1/jobs", json={"stage": "nn"}).get_json()["id"]
    factory, config = lost_at_once(app, broker_url)
    celery = make_celery(config)
    client_redis = redis.Redis.from_url(broker_url)
    time.sleep(0.01)
    # Given their messages still queued: a pass sends nothing
    counts = reconcile_once(factory, celery, config, grace_seconds=0)
    assert counts == {"sent": 0, "lost": 0, "resent": 0, "failed": 0, "batches": 0}
    # When Redis loses every message, then the next pass sends the sweep as one batch again
    client_redis.flushdb()
    counts = reconcile_once(factory, celery, config, grace_seconds=0)
    assert counts == {"sent": 0, "lost": 7, "resent": 0, "failed": 0, "batches": 1}
    assert sorted(queued_messages(client_redis)) == [
        ("trainq.train_batch", fused_ids),
        ("trainq.train_job", [single]),
    ]
    # and a pass after it finds them present: nothing is sent twice
    time.sleep(0.01)
    assert reconcile_once(factory, celery, config, grace_seconds=0)["lost"] == 0
    assert len(queued_messages(client_redis)) == 2
    # Given two fused jobs whose worker died (running, lease run out)
    client_redis.flushdb()
    expired = utcnow() - timedelta(seconds=1)
    with session_scope(factory) as session:
        session.execute(
            sa.update(Job)
            .where(Job.id.in_(fused_ids[:2]))
            .values(status=JobStatus.RUNNING, attempts=1, lease_expires_at=expired)
        )
        session.execute(
            sa.update(Job).where(Job.id.not_in(fused_ids[:2])).values(status="succeeded")
        )
    # Then they are re-sent as one batch, not singly
    counts = reconcile_once(factory, celery, config, grace_seconds=0)
    assert counts == {"sent": 0, "lost": 0, "resent": 2, "failed": 0, "batches": 1}
    assert queued_messages(client_redis) == [("trainq.train_batch", fused_ids[:2])]
    client_redis.close()


def test_an_auto_sweeps_lost_jobs_are_resent_as_they_were_first_sent(
    app: Flask, client: FlaskClient, broker_url: str
) -> None:
    # Given two sweeps under the default `fused: auto`: small jobs (fused by the cost model)
    # and default-size jobs (sent singly), and a sweep stored before `auto` (no `fused` key)
    small = {"stage": "optim", "N": 8, "D_in": 16, "H": 16, "D_out": 2}
    for name, base in (("small", small), ("default", {"stage": "optim"})):
        response = client.post(
            "/api/v1/sweeps", json={"name": name, "base": base, "grid": {"seed": [1, 2, 3]}}
        )
        assert response.status_code == 201, response.get_json()
    old = client.post(
        "/api/v1/sweeps", json={"name": "old", "base": small, "grid": {"seed": [4, 5]}}
    ).get_json()
    factory, config = lost_at_once(app, broker_url)
    with session_scope(factory) as session:
        sweep = session.get_one(Sweep, old["id"])
        sweep.request = {k: v for k, v in sweep.request.items() if k != "fused"}
    ids = {
        name: sorted(j["id"] for j in client.get(f"/api/v1/jobs?name={name}").get_json()["jobs"])
        for name in ("small", "default", "old")
    }
    client_redis = redis.Redis.from_url(broker_url)
    first = sorted(queued_messages(client_redis))
    assert first == sorted(
        [("trainq.train_batch", ids["small"]), ("trainq.train_batch", ids["old"])]
        + [("trainq.train_job", [i]) for i in ids["default"]]
    )
    time.sleep(0.01)
    # When Redis loses every message
    client_redis.flushdb()
    counts = reconcile_once(factory, make_celery(config), config, grace_seconds=0)
    # Then the auto sweeps go out as they first did; the old sweep's jobs singly, as then
    assert counts["lost"] == 8
    assert sorted(queued_messages(client_redis)) == sorted(
        [("trainq.train_batch", ids["small"])]
        + [("trainq.train_job", [i]) for i in ids["default"] + ids["old"]]
    )
    client_redis.close()
