"""Wait for a condition with a deadline, instead of sleeping for a time that is only a guess."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    message: str | Callable[[], str],
    interval: float = 0.05,
) -> T:
    """Poll `condition` until it returns something truthy and return that, or fail at `timeout`.

    `message` says what was awaited; a callable is asked only on failure (for a log's tail).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = message() if callable(message) else message
            raise AssertionError(f"not within {timeout} s: {detail}")
        time.sleep(interval)
