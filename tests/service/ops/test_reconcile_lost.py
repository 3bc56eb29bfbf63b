"""The reconciler finds messages Redis lost, and only those (read as JSON, never unpickled)."""

from __future__ import annotations

import base64
import json
import time

import redis
from flask import Flask
from flask.testing import FlaskClient

from service.config import Config
from service.db import make_session_factory
from service.models.base import utcnow
from service.ops.queued_messages import UNACKED_INDEX_KEY, UNACKED_KEY, job_id_of
from service.ops.reconcile import find_lost_messages
from tests.support.waiting import wait_until


def test_queued_messages_are_present_and_a_flushed_queue_is_lost(
    app: Flask, client: FlaskClient, broker_url: str
) -> None:
    ids = [client.post("/api/v1/jobs", json={"stage": "nn"}).get_json()["id"] for _ in range(3)]
    sent_by = utcnow()
    factory = make_session_factory(app.extensions["trainq.engine"])
    config = Config.from_env(
        database_url=app.config["TRAINQ"].database_url,
        broker_url=broker_url,
        lost_message_seconds=0,
    )
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
    assert held == [job_id_of(raw)]
    # When Redis loses everything
    client_redis.flushdb()
    client_redis.close()
    # Then every queued job is found lost
    assert sorted(job_id for job_id, _ in find_lost_messages(factory, config, utcnow())) == ids


def test_job_id_of_reads_only_json_training_messages() -> None:
    body = json.dumps([[42], {}, {}]).encode()
    message = {
        "body": base64.b64encode(body).decode(),
        "content-type": "application/json",
        "headers": {"task": "trainq.train_job"},
        "properties": {"body_encoding": "base64"},
    }
    assert job_id_of(json.dumps(message)) == 42
    assert job_id_of(json.dumps([message, "", "cpu"])) == 42
    assert (
        job_id_of(json.dumps({**message, "content-type": "application/x-python-serialize"})) is None
    )
    assert job_id_of(json.dumps({**message, "headers": {"task": "other"}})) is None
    assert job_id_of(b"\x80\x04garbage") is None
