"""A worker's heartbeat: its own thread renews the leases of the attempts it holds.

Loss flushes renew a lease too, but a step slower than the lease, or a stack waiting on its
slowest member, must not lose its job; and a dead worker's jobs must be free again within
seconds, so leases are short and the heartbeat, not the training loop, keeps them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy.orm as so

from service import job_states
from service.db import session_scope
from service.job_states import Attempt

log = logging.getLogger(__name__)


class Heartbeat:
    """Renews held attempts every `every` seconds; says which ones this worker must give up."""

    def __init__(
        self,
        factory: so.sessionmaker[so.Session],
        lease_seconds: float,
        every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._lease = lease_seconds
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[int, Attempt] = {}
        self._lost: set[int] = set()
        self._renewed_at: dict[int, float] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, attempts: Sequence[Attempt]) -> Iterator[None]:
        """Keep these attempts' leases alive for the duration of the block."""
        now = self._clock()
        with self._lock:
            for attempt in attempts:
                self._held[attempt.job_id] = attempt
                self._renewed_at[attempt.job_id] = now
                self._lost.discard(attempt.job_id)
            self._start()
        try:
            yield
        finally:
            with self._lock:
                for attempt in attempts:
                    self._held.pop(attempt.job_id, None)
                    self._renewed_at.pop(attempt.job_id, None)
                    self._lost.discard(attempt.job_id)

    def lost(self, attempt: Attempt) -> bool:
        """Whether the attempt must stop: another attempt owns its job, or its lease is unsure."""
        with self._lock:
            if attempt.job_id in self._lost:
                return True
            renewed = self._renewed_at.get(attempt.job_id)
        # Stop before the lease runs out when renewals keep failing (no database): by then
        # another worker may hold the job, and two attempts must never train it at once.
        return renewed is not None and self._clock() - renewed > self._lease - self._every

    def beat(self) -> None:
        """Renew every held attempt once (the thread calls this; tests may too)."""
        with self._lock:
            attempts = list(self._held.values())
        if not attempts:
            return
        started = self._clock()
        with session_scope(self._factory) as session:
            jobs = job_states.held(session, attempts)
            job_states.renew(session, list(jobs.values()), self._lease)
        with self._lock:
            for attempt in attempts:
                if attempt.job_id not in self._held:
                    continue
                if attempt.job_id in jobs:
                    self._renewed_at[attempt.job_id] = started
                else:
                    self._lost.add(attempt.job_id)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="trainq-heartbeat", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._wake.wait(self._every):
            try:
                self.beat()
            except Exception as error:  # the database is away: `lost` counts the silence
                log.warning("heartbeat failed: %s", error)
