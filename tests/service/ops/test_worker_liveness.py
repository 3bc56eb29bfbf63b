"""Which queues have a live worker: asked once, then refreshed behind the submissions."""

from __future__ import annotations

import threading

from celery import Celery

from service.ops.worker_liveness import WorkerLiveness, Workers, unserved_queues
from tests.support.waiting import wait_until


class CountedLiveness(WorkerLiveness):
    """The broadcast replaced by answers the test hands out, one per ask, counted."""

    def __init__(self, answers: list[Workers], clock: list[float]) -> None:
        super().__init__(Celery(set_as_current=False), ttl=10.0, clock=lambda: clock[0])
        self.answers, self.asks = answers, 0
        self.release = threading.Event()

    def _ask(self) -> Workers | None:
        self.asks += 1
        if self.asks > 1:
            self.release.wait(10)  # a slow broadcast: the caller must not be the one waiting
        return self.answers[min(self.asks, len(self.answers)) - 1]


def test_the_first_call_asks_then_answers_come_from_the_last_ask() -> None:
    clock = [0.0]
    liveness = CountedLiveness([{"cpu": ["w1"]}, {"cpu": []}], clock)
    assert liveness.workers() == {"cpu": ["w1"]}
    clock[0] = 5.0
    assert liveness.workers() == {"cpu": ["w1"]}
    assert liveness.asks == 1


def test_a_stale_answer_is_refreshed_on_a_thread_while_callers_keep_the_last_one() -> None:
    clock = [0.0]
    liveness = CountedLiveness([{"cpu": ["w1"]}, {"cpu": []}], clock)
    liveness.workers()
    clock[0] = 11.0
    # The second ask blocks until released: these calls return at once, with the old answer.
    assert liveness.workers() == {"cpu": ["w1"]}
    assert liveness.workers() == {"cpu": ["w1"]}
    wait_until(lambda: liveness.asks == 2, 5, "the refresh asked")
    liveness.release.set()
    wait_until(lambda: liveness.workers() == {"cpu": []}, 5, "the refreshed answer")
    assert liveness.asks == 2  # one refresh for the burst of stale calls


def test_fresh_asks_and_waits() -> None:
    clock = [0.0]
    liveness = CountedLiveness([{"cpu": ["w1"]}, {"cpu": []}], clock)
    liveness.workers()
    liveness.release.set()
    assert liveness.workers(fresh=True) == {"cpu": []}


def test_unserved_queues_are_each_named_once_in_order() -> None:
    assert unserved_queues({"cpu": ["w"], "gpu": []}, ["gpu", "cpu", "gpu"]) == ["gpu"]
