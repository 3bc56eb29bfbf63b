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
from collections.abc import Iterable

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


class Wakeups:
    """A controller's subscription: wait until a trial ends, or `timeout` seconds at most."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.pubsub: redis.client.PubSub | None = None

    def wait(self, timeout: float) -> bool:
        """Sleep until an announcement or the timeout; whether one came."""
        deadline = time.monotonic() + timeout
        try:
            if self.pubsub is None:
                self.pubsub = _client(self.broker_url).pubsub(ignore_subscribe_messages=True)
                self.pubsub.subscribe(CHANNEL)
            while (left := deadline - time.monotonic()) > 0:
                if self.pubsub.get_message(timeout=left) is not None:
                    # Many trials may end at once: one pass answers them all.
                    while self.pubsub.get_message(timeout=0) is not None:
                        pass
                    return True
            return False
        except redis.RedisError as error:
            log.debug("wake-ups unavailable, polling: %s", error)
            self.close()
            time.sleep(max(deadline - time.monotonic(), 0))
            return False

    def close(self) -> None:
        """Drop the subscription (the next wait subscribes again)."""
        if self.pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self.pubsub.close()
            self.pubsub = None
