"""Celery tasks: take a job id, hand the work to the runner."""

from __future__ import annotations

from celery import shared_task

from service.broker import BATCH_TASK, TRAIN_TASK


@shared_task(name=TRAIN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def train_job(self, job_id: int) -> str:  # type: ignore[no-untyped-def]
    """Train one job and record its history; returns the job's final status."""
    from worker.runner import run_job

    return run_job(job_id, worker_name=self.request.hostname or "unknown")


@shared_task(name=BATCH_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def train_batch(self, job_ids: list[int]) -> dict[int, str]:  # type: ignore[no-untyped-def]
    """Train compatible jobs fused, each recording its own history; returns each job's status."""
    from worker.fused_runner import run_batch

    return run_batch(job_ids, worker_name=self.request.hostname or "unknown")
