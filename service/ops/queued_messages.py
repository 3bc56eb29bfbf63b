"""Which jobs have a message in the broker: Redis queue lists and kombu's unacked hash, as JSON."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable

import redis

from service.broker import BATCH_TASK, TRAIN_TASK
from service.choices import QUEUES

# kombu's Redis transport: a queue's priority levels are lists `name`, `name\x06\x163`, ...
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"


def queue_keys(queues: Iterable[str] = QUEUES) -> list[str]:
    """Every Redis list that holds messages of the given queues."""
    return [
        name if step == 0 else f"{name}{PRIORITY_SEPARATOR}{step}"
        for name in queues
        for step in PRIORITY_STEPS
    ]


def job_ids_of(raw: bytes | str) -> list[int]:
    """The job ids a training message carries (one, or a batch's list); only JSON is decoded."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # unacked entries are [message, exchange, routing_key]
            message = message[0]
        task = message.get("headers", {}).get("task")
        if task not in (TRAIN_TASK, BATCH_TASK):
            return []
        if message.get("content-type") != "application/json":
            return []
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        if task == BATCH_TASK:
            # Every job of a batch counts as present: its message may yet train it.
            return [int(job_id) for job_id in args[0]]
        return [int(args[0])]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return []


def job_ids_in_broker(broker_url: str, unacked_for_at_most: float) -> set[int]:
    """Ids of jobs with a message waiting in a queue, or delivered lately and not yet acknowledged.

    A message delivered longer ago than `unacked_for_at_most` to a worker that never claimed its
    job sits with a dead worker: Redis would hand it back only after the visibility timeout.
    """
    client = redis.Redis.from_url(broker_url, socket_timeout=10, socket_connect_timeout=5)
    try:
        found: set[int] = set()
        for key in queue_keys():
            for raw in client.lrange(key, 0, -1):
                found.update(job_ids_of(raw))
        fresh = set(
            client.zrangebyscore(UNACKED_INDEX_KEY, time.time() - unacked_for_at_most, "+inf")
        )
        for tag, raw in client.hgetall(UNACKED_KEY).items():
            if tag in fresh:
                found.update(job_ids_of(raw))
        return found
    finally:
        client.close()
