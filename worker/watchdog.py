"""A task's hard time limit where the pool cannot enforce it (threads, solo: the GPU worker's)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

log = logging.getLogger(__name__)

# Set when the worker starts (worker.celery_app): prefork kills a process past task_time_limit
# and worker.tasks records it; a thread cannot be killed, so other pools get this watchdog.
_armed = False
# A fused stack's limit is its own, not its message's: the watchdog keeps it in every pool; in
# a prefork process, a stack still stuck in one step this long after its limit ends the process.
STUCK_GRACE_SECONDS = 30.0


def arm(enabled: bool) -> None:
    """Whether tasks in this process watch their own hard limit."""
    global _armed
    _armed = enabled


def armed() -> bool:
    """Whether the watchdog runs in this process."""
    return _armed


@contextmanager
def hard_limit(
    job_ids: Sequence[int], seconds: float | None, *, always: bool = False
) -> Iterator[None]:
    """Past `seconds`, end the jobs as failed; their training stops at its next flush.

    The flush sees that the attempt no longer holds its job (as after a cancel) and stops the
    loop, so the thread comes back to the pool and the worker takes its next message.
    `always` watches in a prefork process too (where Celery's limit is the message's).
    """
    if not (_armed or always) or not seconds or seconds <= 0:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        if done.wait(seconds):
            return
        reason = f"hard time limit exceeded: the job ran longer than {seconds:g} s and was stopped"
        log.error("jobs %s: %s", list(job_ids), reason)
        try:
            record_failures(job_ids, reason)
        except Exception:  # the lease runs out and the reconciler's attempt cap ends them
            log.exception("could not record the time limit of jobs %s", list(job_ids))
        if not _armed and not done.wait(STUCK_GRACE_SECONDS):
            log.critical("jobs %s are stuck past their hard limit: ending the process", job_ids)
            os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name=f"hard-limit-{job_ids[0]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


class StackLimits:
    """The hard limits of a fused stack's jobs: each group's from the time it joined, each
    ended when its jobs have left the stack (a refilled stack outlives its first jobs)."""

    def __init__(self, seconds: float | None, *, always: bool = False) -> None:
        self._seconds = seconds
        self._always = always
        self._open: dict[tuple[int, ...], AbstractContextManager[None]] = {}

    def start(self, job_ids: Sequence[int]) -> None:
        """Start the limit of jobs that begin training now."""
        limit = hard_limit(job_ids, self._seconds, always=self._always)
        limit.__enter__()
        self._open[tuple(job_ids)] = limit

    def release(self, training: Collection[int]) -> None:
        """End the limits of the groups none of whose jobs is still `training`."""
        for ids in [ids for ids in self._open if not set(ids) & set(training)]:
            self._open.pop(ids).__exit__(None, None, None)

    def __enter__(self) -> StackLimits:
        return self

    def __exit__(self, *_: object) -> None:
        self.release(())


def record_failures(job_ids: Sequence[int], reason: str) -> None:
    """End each job that has not ended as failed with the reason."""
    from service import job_states
    from service.db import session_scope
    from worker.state import session_factory

    with session_scope(session_factory()) as session:
        for job_id in job_ids:
            job_states.fail(session, job_id, reason)
