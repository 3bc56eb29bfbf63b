"""The reconciler: sends jobs whose message never left or was lost; re-sends lost workers' jobs.

Jobs of a sweep that fuse (asked for, or chosen by `fused: auto`'s cost model) go out as batch
messages, planned as the API plans them, never singly: a fused sweep stays fused however often
its messages are lost.

Safe to run in several places at once: a duplicate message is harmless, since a worker claims a
job only when it is queued or its lease has run out, and a terminal job is never run again.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so
from celery import Celery

from service import job_states
from service.config import Config
from service.db import database_now, locking, session_scope
from service.dispatch.send import send_again
from service.models import Job, JobStatus
from service.ops.metrics import record_reconcile_pass, redis_client
from service.ops.queued_messages import QueueView, job_ids_in_broker

log = logging.getLogger(__name__)


def reconcile_once(
    factory: so.sessionmaker[so.Session],
    app: Celery,
    config: Config,
    grace_seconds: float = 5.0,
    view: QueueView | None = None,
) -> dict[str, int]:
    """One pass; how many jobs it sent, re-sent, found lost, gave up on, and batch messages."""
    # The database's clock, the one every worker's lease was stamped on.
    with factory() as session:
        now = database_now(session)
    lost = find_lost_messages(factory, config, now, view)
    with session_scope(factory) as session:
        unsent = session.execute(
            sa.select(Job.id, Job.queue).where(
                Job.status == JobStatus.QUEUED,
                Job.enqueued_at.is_(None),
                Job.created_at < now - timedelta(seconds=grace_seconds),
            )
        ).all()
        lost_before = now - timedelta(seconds=config.lost_message_seconds)
        expired = session.scalars(
            locking(
                sa.select(Job).where(
                    Job.status == JobStatus.RUNNING,
                    Job.lease_expires_at < now,
                    # Once re-sent, wait for that message (or its loss) before sending another.
                    sa.or_(
                        Job.enqueued_at.is_(None),
                        Job.enqueued_at < Job.lease_expires_at,
                        Job.enqueued_at < lost_before,
                    ),
                ),
                skip_locked=True,
            )
        ).all()
        given_up = 0
        resend: list[tuple[int, str]] = [(row.id, row.queue) for row in unsent] + lost
        for job in expired:
            if job.attempts >= config.max_attempts:
                job_states.give_up(session, job, now)
                given_up += 1
            else:
                resend.append((job.id, job.queue))
    # Sent as the first messages were (a fused sweep's jobs in batches), stamped again.
    batches = send_again(app, factory, resend).batches if resend else 0
    counts = {
        "sent": len(unsent),
        "lost": len(lost),
        "resent": len(resend) - len(unsent) - len(lost),
        "failed": given_up,
        "batches": batches,
    }
    if resend or given_up:
        log.info("reconciled: %s", counts)
    return counts


def find_lost_messages(
    factory: so.sessionmaker[so.Session],
    config: Config,
    now: datetime,
    view: QueueView | None = None,
) -> list[tuple[int, str]]:
    """Queued jobs sent long ago whose message is in no queue and unacknowledged by no worker.

    Redis restarted without its append-only file, or was flushed: the rows are the truth.
    With a view kept between passes, only the messages queued since the last one are read.
    """
    with session_scope(factory) as session:
        stale = session.execute(
            sa.select(Job.id, Job.queue).where(
                Job.status == JobStatus.QUEUED,
                Job.enqueued_at < now - timedelta(seconds=config.lost_message_seconds),
            )
        ).all()
    if not stale:
        return []
    if view is None:
        present = job_ids_in_broker(config.broker_url, config.lost_message_seconds)
    else:
        present = view.job_ids(config.lost_message_seconds)
    return [(row.id, row.queue) for row in stale if row.id not in present]


def reconcile_forever(factory: so.sessionmaker[so.Session], app: Celery, config: Config) -> None:
    """Reconcile every `reconcile_seconds`, surviving a broker or database outage."""
    metrics = redis_client(config.broker_url)
    view = QueueView(config.broker_url)
    while True:
        started = time.monotonic()
        counts: dict[str, int] | None = None
        try:
            counts = reconcile_once(factory, app, config, view=view)
        except Exception as error:  # keep going: the next pass retries
            log.warning("reconcile pass failed: %s", error)
        record_reconcile_pass(metrics, counts, time.monotonic() - started)
        time.sleep(config.reconcile_seconds)
