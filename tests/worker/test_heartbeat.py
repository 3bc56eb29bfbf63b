"""The heartbeat: leases renewed apart from training, fenced attempts told to stop."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy.orm as so

from service.db import session_scope
from service.jobs import new_job
from service.jobspec import validate_job
from service.models import Job
from tests.support.waiting import wait_until
from worker.attempts.claims import Claim, claim_job
from worker.attempts.record import record_chunk
from worker.heartbeat import Heartbeat


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def claimed(factory: so.sessionmaker[so.Session], worker: str = "w", lease: float = 60) -> Claim:
    with session_scope(factory) as session:
        job = new_job(validate_job({"stage": "nn", "iterations": 10}), "cpu")
        session.add(job)
        session.flush()
        claim, _ = claim_job(session, job.id, worker, lease, max_attempts=3)
    assert claim is not None
    return claim


def lease_of(factory: so.sessionmaker[so.Session], job_id: int) -> datetime | None:
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.lease_expires_at


def test_a_beat_renews_every_held_lease(factory: so.sessionmaker[so.Session]) -> None:
    first, second = claimed(factory, lease=1), claimed(factory, lease=1)
    before = lease_of(factory, first.job_id), lease_of(factory, second.job_id)
    beat = Heartbeat(factory, lease_seconds=600, every=60)
    with beat.holding([first, second]):
        beat.beat()
    after = lease_of(factory, first.job_id), lease_of(factory, second.job_id)
    assert all(
        new is not None and old is not None and new > old
        for old, new in zip(before, after, strict=True)
    )
    assert not beat.lost(first)
    assert not beat.lost(second)


def test_the_thread_keeps_a_lease_alive_through_a_step_longer_than_it(
    factory: so.sessionmaker[so.Session],
) -> None:
    claim = claimed(factory, lease=1)
    beat = Heartbeat(factory, lease_seconds=1, every=0.1)
    leases = [lease_of(factory, claim.job_id)]

    def renewed_twice() -> bool:
        lease = lease_of(factory, claim.job_id)
        if lease != leases[-1]:
            leases.append(lease)
        return len(leases) >= 3

    with beat.holding([claim]):
        # The "training step" here is this wait: no flush, and still the lease moves on.
        wait_until(renewed_twice, 10, "two renewals by the heartbeat thread")
        assert not beat.lost(claim)
    # Released: the thread no longer renews it.
    settled = lease_of(factory, claim.job_id)
    beat.beat()
    assert lease_of(factory, claim.job_id) == settled


def test_an_attempt_whose_job_another_attempt_took_is_lost(
    factory: so.sessionmaker[so.Session],
) -> None:
    first = claimed(factory, "a", lease=-1)
    with session_scope(factory) as session:
        second, _ = claim_job(session, first.job_id, "b", 60, max_attempts=3)
    assert second is not None
    beat = Heartbeat(factory, lease_seconds=60, every=60)
    with beat.holding([first]):
        old_lease = lease_of(factory, first.job_id)
        beat.beat()
        assert beat.lost(first)
        # The fence: the lost attempt renewed nothing and its chunk is refused.
        assert lease_of(factory, first.job_id) == old_lease
        with session_scope(factory) as session:
            assert record_chunk(session, first, 0, [1.0], 60) is False


def test_an_attempt_that_cannot_renew_stops_before_its_lease_runs_out(
    factory: so.sessionmaker[so.Session],
) -> None:
    claim = claimed(factory)
    clock = Clock()
    beat = Heartbeat(factory, lease_seconds=12, every=2, clock=clock)
    with beat.holding([claim]):
        clock.now += 9.9  # no beat got through for almost the whole lease less one period
        assert not beat.lost(claim)
        clock.now += 0.2
        assert beat.lost(claim)
        # A renewal that gets through again makes it whole.
        beat.beat()
        assert not beat.lost(claim)
