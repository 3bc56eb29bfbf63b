"""Controller wake-ups over Redis: an announcement ends a wait early; without Redis, polling."""

from __future__ import annotations

import threading
import time

import redis

from service.sweeps.wakeup import CHANNEL, Wakeups, announce
from tests.support.waiting import wait_until


def _listeners(broker_url: str) -> int:
    """How many subscriptions Redis has on the wake-up channel."""
    counts = dict(redis.Redis.from_url(broker_url).pubsub_numsub(CHANNEL))
    return int(counts.get(CHANNEL.encode(), 0))


def test_an_announcement_wakes_a_waiting_controller(broker_url: str) -> None:
    # Given a controller waiting up to a minute, subscribed
    wakeups = Wakeups(broker_url)
    woken: list[tuple[bool, float]] = []

    def waiting() -> None:
        started = time.monotonic()
        woken.append((wakeups.wait(60), time.monotonic() - started))

    thread = threading.Thread(target=waiting, daemon=True)
    thread.start()
    wait_until(lambda: _listeners(broker_url) == 1, 30, "the controller subscribed")

    # When a worker announces a trial's end, once
    announce(broker_url, [7])
    thread.join(30)

    # Then the wait ended with the announcement, long before its minute
    assert woken
    assert woken[0][0] is True
    assert woken[0][1] < 60
    # And with nothing announced since, a wait runs out and says so
    assert wakeups.wait(0.2) is False
    wakeups.close()


def test_a_wait_consumes_the_whole_burst_pending_when_it_returns(broker_url: str) -> None:
    # Given a subscribed controller and a burst of announcements Redis has already queued to it
    wakeups = Wakeups(broker_url)
    wakeups.subscribe()
    publisher = redis.Redis.from_url(broker_url)
    for sweep_id in range(50):
        assert publisher.publish(CHANNEL, str(sweep_id)) == 1  # queued to our subscription
    # When it waits, it wakes at once, and its one pass answers the whole burst
    assert wakeups.wait(5) is True
    assert wakeups.wait(0.2) is False
    # And an announcement after that wakes the next wait
    announce(broker_url, [3])
    assert wakeups.wait(5) is True
    assert wakeups.wait(0.2) is False
    wakeups.close()


def test_without_redis_announcing_is_harmless_and_waiting_is_polling() -> None:
    dead = "redis://127.0.0.1:9/0"  # the discard port: nothing answers
    announce(dead, [1, 2])
    wakeups = Wakeups(dead)
    started = time.monotonic()
    assert wakeups.wait(0.3) is False
    assert time.monotonic() - started >= 0.3
