"""Which jobs have a message in the broker: Redis queue lists and kombu's unacked hash, as JSON."""

from __future__ import annotations

import base64
import hashlib
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
# Entries read past the newest one seen, for messages pushed between a pass's two reads.
SLACK = 64


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


def unacked_job_ids(client: redis.Redis, unacked_for_at_most: float) -> set[int]:
    """Ids of jobs whose message a worker took within the last `unacked_for_at_most` seconds."""
    fresh = set(client.zrangebyscore(UNACKED_INDEX_KEY, time.time() - unacked_for_at_most, "+inf"))
    found: set[int] = set()
    for tag, raw in client.hgetall(UNACKED_KEY).items():
        if tag in fresh:
            found.update(job_ids_of(raw))
    return found


def job_ids_in_broker(broker_url: str, unacked_for_at_most: float) -> set[int]:
    """Ids of jobs with a message waiting in a queue, or delivered lately and not yet acknowledged.

    A message delivered longer ago than `unacked_for_at_most` to a worker that never claimed its
    job sits with a dead worker: Redis would hand it back only after the visibility timeout.
    Reads every queued message: one-off checks; the reconciler's passes keep a QueueView.
    """
    client = redis.Redis.from_url(broker_url, socket_timeout=10, socket_connect_timeout=5)
    try:
        found: set[int] = set()
        for key in queue_keys():
            for raw in client.lrange(key, 0, -1):
                found.update(job_ids_of(raw))
        return found | unacked_job_ids(client, unacked_for_at_most)
    finally:
        client.close()


def _digest(raw: bytes | str) -> bytes:
    # Each published message carries its own delivery tag: equal bytes are the same message.
    data = raw.encode() if isinstance(raw, str) else raw
    return hashlib.blake2b(data, digest_size=12).digest()


class QueueView:
    """The job ids of the queue lists, kept between passes, reading only what changed.

    kombu pushes a message at a list's head and workers pop at its tail, so a pass reads the
    tail entry (how many seen ones were taken) and the entries newer than the newest seen one,
    and decodes only those; a list changed any other way (flushed, a message put back at the
    tail) is read whole again.
    """

    def __init__(self, broker_url: str) -> None:
        self.client = redis.Redis.from_url(broker_url, socket_timeout=10, socket_connect_timeout=5)
        # Per list, oldest first: each seen entry's digest and the job ids it carries.
        self.digests: dict[str, list[bytes]] = {}
        self.ids: dict[str, list[list[int]]] = {}
        self.decoded = 0  # messages the last pass decoded

    def close(self) -> None:
        """Drop the Redis connection."""
        self.client.close()

    def job_ids(self, unacked_for_at_most: float) -> set[int]:
        """As job_ids_in_broker, from the lists as last seen plus what changed since."""
        self.decoded = 0
        found: set[int] = set()
        for key in queue_keys():
            self._refresh(key)
            for ids in self.ids[key]:
                found.update(ids)
        return found | unacked_job_ids(self.client, unacked_for_at_most)

    def _refresh(self, key: str) -> None:
        digests, ids = self.digests.get(key, []), self.ids.get(key, [])
        pipe = self.client.pipeline(transaction=True)
        pipe.llen(key)
        pipe.lindex(key, -1)
        length, oldest = pipe.execute()
        if not length:
            self._keep(key, [], [])
            return
        if not digests or _digest(oldest) not in digests:
            self._read_whole(key)
            return
        taken = digests.index(_digest(oldest))
        del digests[:taken], ids[:taken]
        newer = length - len(digests)
        if newer < 0:
            self._read_whole(key)
            return
        head = self.client.lrange(key, 0, newer + SLACK - 1)
        head_digests = [_digest(raw) for raw in head]
        if digests[-1] not in head_digests:
            self._read_whole(key)
            return
        fresh = head[: head_digests.index(digests[-1])]
        self.decoded += len(fresh)
        for raw in reversed(fresh):
            digests.append(_digest(raw))
            ids.append(job_ids_of(raw))
        self._keep(key, digests, ids)

    def _read_whole(self, key: str) -> None:
        raws = self.client.lrange(key, 0, -1)[::-1]
        self.decoded += len(raws)
        self._keep(key, [_digest(raw) for raw in raws], [job_ids_of(raw) for raw in raws])

    def _keep(self, key: str, digests: list[bytes], ids: list[list[int]]) -> None:
        self.digests[key], self.ids[key] = digests, ids
