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
from service.ops.queued_messages import (
    UNACKED_INDEX_KEY,
    UNACKED_KEY,
    job_ids_in_broker,
    job_ids_of,
)
from service.ops.reconcile import find_lost_messages


def test_queued_messages_are_present_and_a_flushed_queue_is_lost(
    app: Flask, client: FlaskClient, broker_url: str
) -> None:
    ids = [client.post("/api/v1/jobs", json={"stage": "nn"}).get_json()["id"] for _ in range(3)]
    factory = make_session_factory(app.extensions["trainq.engine"])
    config = Config.from_env(
        database_url=app.config["TRAINQ"].database_url,
        broker_url=broker_url,
        lost_message_seconds=0,
    )
    time.sleep(0.01)
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
    response = client.post(
        "/api/v1/sweeps",
        json={"name": "f", "base": {"stage": "optim"}, "grid": {"seed": [1, 2, 3, 4, 5, 6]},
              "fused": True},
    )  # fmt: skip
    assert response.status_code == 201, response.get_json()
    client_redis = redis.Redis.from_url(broker_url)
    queued = client_redis.lrange("cpu", 0, -1)
    assert [json.loads(raw)["headers"]["task"] for raw in queued] == ["trainq.train_batch"]
    factory = make_session_factory(app.extensions["trainq.engine"])
    config = Config.from_env(
        database_url=app.config["TRAINQ"].database_url,
        broker_url=broker_url,
        lost_message_seconds=0,
    )
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
