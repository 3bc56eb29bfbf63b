"""The one way committed jobs reach the broker: never while a write transaction is open.

A slow or stalled Redis must not hold a database lock (on SQLite, the one write lock every
worker's flush and heartbeat waits for). So the rows are read in a read-only scope, the
messages sent with no transaction open, and `enqueued_at` stamped in a short transaction of
its own. Every sender calls here: the API (jobs, sweeps), the search controller, the
reconciler and a worker handing jobs back; fused sweeps' jobs go in batches planned alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so
from celery import Celery

from service.broker import enqueue_batches, enqueue_jobs
from service.db import database_now, read_scope, session_scope
from service.dispatch.fusing import split_fused
from service.models import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sent:
    """What one send did: the `enqueued_at` it stamped, and how many batch messages it sent."""

    stamped_at: datetime
    batches: int


def send(
    app: Celery, factory: so.sessionmaker[so.Session], jobs: list[tuple[int, str]]
) -> datetime | None:
    """Send newly committed (job id, queue)s; the stamp, or None if nothing was sent.

    A broker that is down loses nothing: the rows are the truth, and a job whose `enqueued_at`
    stays null is the reconciler's to send.
    """
    if not jobs:
        return None
    sent = _send(app, factory, jobs, first=True)
    return None if sent is None else sent.stamped_at


def send_again(
    app: Celery, factory: so.sessionmaker[so.Session], jobs: list[tuple[int, str]]
) -> Sent:
    """Send (job id, queue)s whose message was lost or handed back, stamping every one.

    Raises when the broker is down: the caller (the reconciler's pass, a worker's hand-back)
    says so, and the reconciler's next pass sends them.
    """
    sent = _send(app, factory, jobs, first=False)
    assert sent is not None  # only a first send swallows a broker error
    return sent


def _send(
    app: Celery, factory: so.sessionmaker[so.Session], jobs: list[tuple[int, str]], *, first: bool
) -> Sent | None:
    """Enqueue the jobs (fused sweeps' in batches), then stamp them with the database's clock."""
    with read_scope(factory) as session:
        singles, batches = split_fused(session, jobs)
    try:
        if batches:
            enqueue_batches(app, batches)
        if singles:
            enqueue_jobs(app, singles)
    except Exception as error:
        if not first:
            raise
        log.warning("broker unavailable, %d job(s) left for the reconciler: %s", len(jobs), error)
        return None
    with session_scope(factory) as session:
        # The database's clock: the reconciler compares this stamp with workers' leases.
        now = database_now(session)
        stamp = sa.update(Job).where(Job.id.in_([job_id for job_id, _ in jobs]))
        if first:
            stamp = stamp.where(Job.enqueued_at.is_(None))
        session.execute(stamp.values(enqueued_at=now).execution_options(synchronize_session=False))
    return Sent(now, len(batches))
