"""The reconciler: sends jobs whose message never left, and re-sends jobs whose worker vanished."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so
from celery import Celery

from service.broker import enqueue_jobs
from service.config import Config
from service.db import session_scope
from service.models import Job, JobStatus
from service.models.base import utcnow

log = logging.getLogger(__name__)


def reconcile_once(
    factory: so.sessionmaker[so.Session], app: Celery, config: Config, grace_seconds: float = 5.0
) -> dict[str, int]:
    """One pass; returns how many jobs it sent, re-sent and gave up on."""
    now = utcnow()
    with session_scope(factory) as session:
        unsent = session.execute(
            sa.select(Job.id, Job.queue).where(
                Job.status == JobStatus.QUEUED,
                Job.enqueued_at.is_(None),
                Job.created_at < now - timedelta(seconds=grace_seconds),
            )
        ).all()
        expired = session.scalars(
            sa.select(Job).where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)
        ).all()
        given_up = 0
        resend: list[tuple[int, str]] = [(row.id, row.queue) for row in unsent]
        for job in expired:
            if job.attempts >= config.max_attempts:
                job.status, job.finished_at, job.lease_expires_at = JobStatus.FAILED, now, None
                job.error = f"gave up after {job.attempts} attempts: the worker was lost each time"
                given_up += 1
            else:
                resend.append((job.id, job.queue))
    if resend:
        enqueue_jobs(app, resend)
        with session_scope(factory) as session:
            session.execute(
                sa.update(Job)
                .where(Job.id.in_([job_id for job_id, _ in resend]))
                .values(enqueued_at=utcnow())
            )
    counts = {"sent": len(unsent), "resent": len(resend) - len(unsent), "failed": given_up}
    if resend or given_up:
        log.info("reconciled: %s", counts)
    return counts


def reconcile_forever(factory: so.sessionmaker[so.Session], app: Celery, config: Config) -> None:
    """Reconcile every `reconcile_seconds`, surviving a broker or database outage."""
    while True:
        try:
            reconcile_once(factory, app, config)
        except Exception as error:  # keep going: the next pass retries
            log.warning("reconcile pass failed: %s", error)
        time.sleep(config.reconcile_seconds)
