"""The one way committed jobs reach the broker: never while a write transaction is open.

A slow or stalled Redis must not hold a database lock (on SQLite, the one write lock every
worker's flush and heartbeat waits for). So the rows are read in a read-only scope, the
messages sent with no transaction open, and `enqueued_at` stamped in a short transaction of
its own; a send that fails leaves `enqueued_at` null for the reconciler to send.
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so
from celery import Celery

from service.broker import enqueue_batches, enqueue_jobs
from service.db import database_now, read_scope, session_scope
from service.models import Job
from service.sweeps.batching import split_fused

log = logging.getLogger(__name__)


def send_committed(
    app: Celery, factory: so.sessionmaker[so.Session], jobs: list[tuple[int, str]]
) -> datetime | None:
    """Send committed (job id, queue)s, fused sweeps' jobs in batches; the stamp, or None."""
    if not jobs:
        return None
    with read_scope(factory) as session:
        singles, batches = split_fused(session, jobs)
    try:
        if batches:
            enqueue_batches(app, batches)
        if singles:
            enqueue_jobs(app, singles)
    except Exception as error:  # the broker is down: the rows are the truth, send later
        log.warning("broker unavailable, %d job(s) left for the reconciler: %s", len(jobs), error)
        return None
    with session_scope(factory) as session:
        # The database's clock: the reconciler compares this stamp with workers' leases.
        now = database_now(session)
        session.execute(
            sa.update(Job)
            .where(Job.id.in_([job_id for job_id, _ in jobs]), Job.enqueued_at.is_(None))
            .values(enqueued_at=now)
            .execution_options(synchronize_session=False)
        )
    return now
