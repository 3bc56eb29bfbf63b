"""Which queues have a live worker: one whose main process answers the broker's broadcast.

A frozen (SIGSTOP) or absent worker does not answer, so its queue counts as having none. Asking
waits out the whole reply timeout (the broker cannot say how many workers will answer), so a
submission never waits for it past the first time: an answer older than `ttl` is asked again on
a thread of its own while the submission uses the last one. A busy worker still answers (its
main process consumes the broadcast, its pool trains).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from celery import Celery

from service.choices import QUEUES

Workers = dict[str, list[str]]


class WorkerLiveness:
    """Live workers per queue, asked of the broker at most every `ttl` seconds."""

    def __init__(
        self,
        app: Celery,
        ttl: float = 10.0,
        timeout: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app, self.ttl, self.timeout, self.clock = app, ttl, timeout, clock
        self._lock = threading.Lock()
        self._known: Workers | None = None
        self._asked_at = -float("inf")
        self._refreshing = False

    def workers(self, fresh: bool = False) -> Workers | None:
        """Queue -> names of the workers that answered; None when the broker did not answer.

        `fresh` (GET /health, which says so) and the first call ask and wait; later calls
        answer at once from the last answer, refreshed behind them once it is `ttl` old.
        """
        with self._lock:
            if fresh or self._asked_at == -float("inf"):
                self._store(self._ask())
            elif self.clock() - self._asked_at > self.ttl and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="worker-liveness", daemon=True).start()
            return self._known

    def _refresh(self) -> None:
        answer = self._ask()
        with self._lock:
            self._store(answer)
            self._refreshing = False

    def _store(self, answer: Workers | None) -> None:
        self._known, self._asked_at = answer, self.clock()

    def _ask(self) -> Workers | None:
        try:
            with self.app.connection_for_write() as connection:
                # A broker that is down fails here at once, not after Celery's endless retries.
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=self.timeout)
                inspect = self.app.control.inspect(timeout=self.timeout, connection=connection)
                replies = inspect.active_queues() or {}
        except Exception:  # the broker is away: nobody can say who is alive
            return None
        per_queue: Workers = {queue: [] for queue in QUEUES}
        for worker, queues in sorted(replies.items()):
            for queue in queues:
                per_queue.setdefault(queue["name"], []).append(worker)
        return per_queue


def unserved_queues(workers: Workers, queues: Iterable[str]) -> list[str]:
    """The queues among `queues` that no live worker serves, in order, each once."""
    return [queue for queue in dict.fromkeys(queues) if not workers.get(queue)]


def no_worker_warning(queue: str) -> str:
    """What a client is told about a queue with no live worker."""
    return (
        f"no live worker on queue {queue}: its jobs stay queued until one starts"
        f" (`trainq worker --queues {queue}`, or `make run`)"
    )
