"""Celery tasks: take a job id, hand the work (and the task's own app) to worker.attempts."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.worker.request import Request

from service.broker import BATCH_TASK, TRAIN_TASK

log = logging.getLogger(__name__)


class TrainTaskRequest(Request):
    """The Celery request of one train_job message: its hard time limit also fails the job."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """Celery acks a hard-killed task: write the job's terminal state so nothing re-sends it."""
        super().on_timeout(soft, timeout)
        if soft:
            return
        from service import job_states
        from service.db import session_scope
        from worker.state import session_factory

        job_id = int(self.args[0])
        reason = f"hard time limit exceeded: the job was killed after {timeout:g} s"
        try:
            with session_scope(session_factory()) as session:
                job_states.fail(session, job_id, reason)
        except Exception:  # the lease runs out and the reconciler's attempt cap ends it
            log.exception("could not record the time limit of job %s", job_id)


@shared_task(
    name=TRAIN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, Request=TrainTaskRequest
)
def train_job(self: Task, job_id: int) -> str:
    """Train one job and record its history; returns the job's final status."""
    from worker.attempts.stacks import run_job

    return run_job(job_id, self.request.hostname or "unknown", self.app)


@shared_task(name=BATCH_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def train_batch(self: Task, job_ids: list[int]) -> dict[int, str]:
    """Train compatible jobs fused, each recording its own history; returns each job's status."""
    from worker.attempts.stacks import run_batch

    # Each stack's hard limit is kept by worker.attempts; Celery's covers the whole message.
    return run_batch(job_ids, self.request.hostname or "unknown", self.app)
