"""wait_until returns as soon as its condition holds and fails with what it waited for."""

from __future__ import annotations

import itertools

import pytest

from tests.support.waiting import wait_until


def test_returns_the_first_truthy_value_of_the_condition() -> None:
    calls = itertools.count()
    assert wait_until(lambda: next(calls) >= 3 and "ready", 5, "three calls", interval=0) == "ready"


def test_fails_at_the_deadline_with_the_message_asked_only_then() -> None:
    asked = []

    def message() -> str:
        asked.append(True)
        return "the log's tail"

    with pytest.raises(AssertionError, match=r"not within 0\.1 s: the log.s tail"):
        wait_until(lambda: asked, 0.1, message)
    assert asked == [True]
