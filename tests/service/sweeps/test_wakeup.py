"""Controller wake-ups over Redis: an announcement ends a wait early; without Redis, polling."""

from __future__ import annotations

import threading
import time

from service.sweeps.wakeup import Wakeups, announce
from tests.support.waiting import wait_until


def test_an_announcement_wakes_a_waiting_controller(broker_url: str) -> None:
    # Given a controller waiting up to a minute
    wakeups = Wakeups(broker_url)
    woken: list[tuple[bool, float]] = []

    def waiting() -> None:
        started = time.monotonic()
        woken.append((wakeups.wait(60), time.monotonic() - started))

    thread = threading.Thread(target=waiting, daemon=True)
    thread.start()

    # When a worker announces a trial's end (again until it is heard: it may not listen yet)
    def heard() -> bool:
        announce(broker_url, [7])
        return bool(woken)

    wait_until(heard, 30, "the controller woken")
    thread.join(5)
    # Then the wait ended with the announcement, long before its minute
    assert woken[0][0] is True
    assert woken[0][1] < 60
    # And with nothing announced a wait runs out and says so
    assert wakeups.wait(0.2) is False
    wakeups.close()


def test_without_redis_announcing_is_harmless_and_waiting_is_polling() -> None:
    dead = "redis://127.0.0.1:9/0"  # the discard port: nothing answers
    announce(dead, [1, 2])
    wakeups = Wakeups(dead)
    started = time.monotonic()
    assert wakeups.wait(0.3) is False
    assert time.monotonic() - started >= 0.3
