"""Celery tasks: take a job id, hand the work to the runner."""

from __future__ import annotations

from celery import shared_task

from service.broker import TRAIN_TASK


@shared_task(name=TRAIN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def train_job(self, job_id: int) -> str:  # type: ignore[no-untyped-def]
    """Train one job and record its history; returns the job's final status."""
    from worker.runner import run_job

    return run_job(job_id, worker_name=self.request.hostname or "unknown")
