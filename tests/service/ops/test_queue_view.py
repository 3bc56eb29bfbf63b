"""The reconciler's view of the queues reads only what changed since its last pass."""

from __future__ import annotations

import base64
import json
import uuid

import redis

from service.ops.queued_messages import QueueView, job_ids_in_broker

BACKLOG = 2000


def message(job_id: int) -> bytes:
    """A training message as kombu's Redis transport stores it (JSON, its own delivery tag)."""
    body = json.dumps([[job_id], {}, {}]).encode()
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-type": "application/json",
            "headers": {"task": "trainq.train_job", "id": str(uuid.uuid4())},
            "properties": {"body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
        }
    ).encode()


def sent_bytes(client: redis.Redis) -> int:
    """Bytes Redis has sent its clients so far."""
    return int(client.info("stats")["total_net_output_bytes"])


def test_a_pass_reads_only_the_messages_queued_since_the_last(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    view = QueueView(broker_url)
    try:
        # Given a backlog (kombu pushes at the head, workers pop at the tail)
        for start in range(1, BACKLOG + 1, 500):
            client.lpush("cpu", *(message(i) for i in range(start, start + 500)))
        assert view.job_ids(60) == set(range(1, BACKLOG + 1))
        assert view.decoded == BACKLOG
        # When workers take 10 and 5 more are sent
        for _ in range(10):
            client.rpop("cpu")
        client.lpush("cpu", *(message(i) for i in range(BACKLOG + 1, BACKLOG + 6)))
        before = sent_bytes(client)
        present = view.job_ids(60)
        read = sent_bytes(client) - before
        # Then the pass sees exactly what the queue holds, decoding and reading only the new
        assert present == set(range(11, BACKLOG + 6)) == job_ids_in_broker(broker_url, 60)
        whole = sum(len(raw) for raw in client.lrange("cpu", 0, -1))
        assert read < whole / 10, f"read {read} bytes of a {whole}-byte queue"
        assert view.decoded == 5
        # And a quiet queue costs no decoding at all
        assert view.job_ids(60) == present
        assert view.decoded == 0
        # When a message is put back at the tail (kombu's restore), the list is read again
        client.rpush("cpu", message(7))
        assert view.job_ids(60) == present | {7}
        assert view.decoded == len(present) + 1
        # When every seen message is taken and new ones arrive
        client.delete("cpu")
        client.lpush("cpu", message(9001), message(9002))
        assert view.job_ids(60) == {9001, 9002}
        # When Redis loses everything, nothing is present
        client.flushdb()
        assert view.job_ids(60) == set()
    finally:
        view.close()
        client.close()
