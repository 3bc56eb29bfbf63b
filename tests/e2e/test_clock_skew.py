"""Leases on the database's clock: a worker whose own clock lags keeps its jobs."""

from __future__ import annotations

import sys

import pytest
import sqlalchemy as sa

from service.broker import make_celery
from service.config import Config
from service.db import make_engine, make_session_factory
from service.models import Job, JobStatus
from service.ops.reconcile import reconcile_once
from tests.conftest import TERMINAL, Stack
from tests.e2e.conftest import OneWorker
from tests.support.waiting import wait_until

LEASE = 3.0
# Far more than a lease: by its own clock every lease this worker stamps ran out long ago.
LAG = -60


@pytest.fixture(scope="module")
def one_worker() -> OneWorker:
    """One worker process whose Python clock runs a minute behind."""
    return OneWorker(
        11,
        {
            "TRAINQ_TEST_CLOCK_SKEW_SECONDS": str(LAG),
            "TRAINQ_LEASE_SECONDS": str(LEASE),
            "TRAINQ_HEARTBEAT_SECONDS": "0.5",
        },
        prefix=(sys.executable, "-m", "tests.support.skewed_clock"),
    )


def test_a_worker_whose_clock_lags_keeps_its_jobs(own_stack: Stack) -> None:
    stack = own_stack
    # A send counts as lost a lease after it (not 300 s): from then on only the lease tells.
    config = Config.from_env(
        database_url=stack.database_url,
        broker_url=stack.broker_url,
        lease_seconds=LEASE,
        lost_message_seconds=LEASE,
    )
    engine = make_engine(stack.database_url)
    factory = make_session_factory(engine, writer=True)
    celery = make_celery(config)
    # Given a job that trains for several leases on the lagging worker
    job_id = stack.submit(stage="nn", iterations=10000)["id"]

    def status() -> str:
        with stack.sessions() as session:
            return session.scalar(sa.select(Job.status).where(Job.id == job_id)) or ""

    wait_until(lambda: status() == JobStatus.RUNNING, 60, "the job to start")
    # When the reconciler (on this host's clock) passes again and again while it trains
    passes: list[dict[str, int]] = []

    def reconciled_to_its_end() -> bool:
        passes.append(reconcile_once(factory, celery, config))
        return status() in TERMINAL

    try:
        wait_until(reconciled_to_its_end, 300, "the job to end", interval=0.5)
    finally:
        celery.close()
        engine.dispose()
    # Then its lease never looked expired: not re-sent, one attempt, trained to the end
    assert [counts for counts in passes if counts["resent"] or counts["failed"]] == []
    with stack.sessions() as session:
        job = session.get_one(Job, job_id)
        assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
        assert job.started_at is not None
        assert job.finished_at is not None
        assert (job.finished_at - job.started_at).total_seconds() > LEASE, "too short a test"
