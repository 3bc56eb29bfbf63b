"""Wake-ups for search controllers: a worker announces that a search trial ended, over Redis.

The controller still passes every `controller_seconds`; an announcement only brings its next
pass forward, so a lost one (Redis down, nobody subscribed) costs at most that wait, never a
trial. The tables stay the truth: a message carries a sweep id and nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis

log = logging.getLogger(__name__)
CHANNEL = "trainq:search-trial-ended"


@functools.cache
def _client(broker_url: str) -> redis.Redis:
    # One pool per process; redis-py opens new connections in a forked child.
    return redis.Redis.from_url(broker_url, socket_timeout=1, socket_connect_timeout=1)


def announce(broker_url: str, sweep_ids: Iterable[int]) -> None:
    """Tell the controllers that trials of these sweeps ended (best effort)."""
    try:
        for sweep_id in sorted(set(sweep_ids)):
            _client(broker_url).publish(CHANNEL, str(sweep_id))
    except redis.RedisError as error:  # the controller's own pass comes anyway
        log.debug("wake-up not sent: %s", error)


def _text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data


def _read_until(pubsub: redis.client.PubSub, found: Callable[[dict[str, Any]], bool]) -> None:
    """Read the subscription's messages up to the first `found` one (a second each at most)."""
    while True:
        message = pubsub.get_message(timeout=1)
        if message is None:
            raise redis.TimeoutError("Redis did not answer the subscription in time")
        if found(message):
            return


class Wakeups:
    """A controller's subscription: wait until a trial ends, or `timeout` seconds at most.

    A wait that returns True has consumed every announcement Redis held for this subscription
    at that moment: the controller's one pass answers a burst, so the next wait sleeps until an
    announcement made after it.
    """

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.pubsub: redis.client.PubSub | None = None

    def subscribe(self) -> None:
        """Listen from now on (a wait subscribes by itself; this lets a caller be sure)."""
        if self.pubsub is None:
            pubsub = _client(self.broker_url).pubsub()
            try:
                pubsub.subscribe(CHANNEL)
                # Once Redis confirms, every announcement from then on reaches this subscription.
                _read_until(pubsub, lambda message: message["type"] == "subscribe")
            except redis.RedisError:
                with contextlib.suppress(redis.RedisError):
                    pubsub.close()
                raise
            self.pubsub = pubsub

    def wait(self, timeout: float) -> bool:
        """Sleep until an announcement or the timeout; whether one came."""
        deadline = time.monotonic() + timeout
        try:
            self.subscribe()
            assert self.pubsub is not None
            while (left := deadline - time.monotonic()) > 0:
                message = self.pubsub.get_message(timeout=left)
                if message is not None and message["type"] == "message":
                    self._drain(self.pubsub)
                    return True
            return False
        except redis.RedisError as error:
            log.debug("wake-ups unavailable, polling: %s", error)
            self.close()
            time.sleep(max(deadline - time.monotonic(), 0))
            return False

    @staticmethod
    def _drain(pubsub: redis.client.PubSub) -> None:
        """Consume every announcement Redis holds for us now, however far it still has to travel.

        Redis answers a PING on this connection after every message queued before it, so
        reading up to that PING's answer empties the subscription as of now: no leftover of a
        burst wakes the next wait.
        """
        marker = uuid.uuid4().hex
        pubsub.ping(marker)
        _read_until(
            pubsub, lambda message: message["type"] == "pong" and _text(message["data"]) == marker
        )

    def close(self) -> None:
        """Drop the subscription (the next wait subscribes again)."""
        if self.pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self.pubsub.close()
            self.pubsub = None
