"""Job state changes: each transition's write, the ownership fence, and one writer of status."""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from service import job_states
from service.db import session_scope
from service.job_states import Attempt
from service.jobs import new_job
from service.jobspec import validate_job
from service.models import Checkpoint, Job, JobStatus, Sweep
from service.models.base import utcnow

ROOT = Path(__file__).resolve().parents[2]


def add_job(factory: so.sessionmaker[so.Session], sweep_id: int | None = None) -> int:
    with session_scope(factory) as session:
        job = new_job(validate_job({"stage": "nn", "iterations": 10}), "cpu")
        job.sweep_id = sweep_id
        session.add(job)
    return job.id


def add_sweep(factory: so.sessionmaker[so.Session], job_count: int) -> int:
    with session_scope(factory) as session:
        sweep = Sweep(name="s", request={}, job_count=job_count, seed=1)
        session.add(sweep)
        session.flush()
        return sweep.id


def read(factory: so.sessionmaker[so.Session], job_id: int) -> Job:
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def claim(factory: so.sessionmaker[so.Session], job_id: int, worker: str = "w", lease=60.0):
    with session_scope(factory) as session:
        job, state = job_states.claim(session, job_id, worker, lease, max_attempts=2)
        return (Attempt(job_id, job.attempts, worker) if job else None), state


def add_checkpoint(factory: so.sessionmaker[so.Session], job_id: int) -> None:
    with session_scope(factory) as session:
        session.add(
            Checkpoint(
                job_id=job_id, step=5, attempt=1, created_at=utcnow(), tensors=b"", layout={}
            )
        )


def checkpoints(factory: so.sessionmaker[so.Session], job_id: int) -> int:
    with factory() as session:
        query = sa.select(sa.func.count()).where(Checkpoint.job_id == job_id)
        return session.scalar(query) or 0


def test_claim_starts_an_attempt_under_a_lease(factory: so.sessionmaker[so.Session]) -> None:
    job_id = add_job(factory)
    attempt, state = claim(factory, job_id)
    job = read(factory, job_id)
    assert state == JobStatus.RUNNING
    assert attempt == Attempt(job_id, 1, "w")
    assert job.status == JobStatus.RUNNING
    assert job.worker == "w"
    assert job.attempts == 1
    assert job.lease_expires_at is not None
    assert job.lease_expires_at > utcnow()
    assert job.stack_size == 1
    # Held: another worker cannot take it while the lease runs.
    assert claim(factory, job_id, "other") == (None, "held")


def test_only_the_attempt_that_holds_the_job_finishes_it(
    factory: so.sessionmaker[so.Session],
) -> None:
    job_id = add_job(factory)
    first, _ = claim(factory, job_id, "a", lease=-1)
    second, _ = claim(factory, job_id, "b")
    assert first is not None
    assert second is not None
    with session_scope(factory) as session:
        assert job_states.owns(session.get(Job, job_id), second)
        assert not job_states.owns(session.get(Job, job_id), first)
        assert job_states.finish(session, first, JobStatus.SUCCEEDED) is None
    assert read(factory, job_id).status == JobStatus.RUNNING
    add_checkpoint(factory, job_id)
    with session_scope(factory) as session:
        assert job_states.finish(session, second, JobStatus.DIVERGED) is not None
    job = read(factory, job_id)
    assert job.status == JobStatus.DIVERGED
    assert job.finished_at is not None
    assert job.lease_expires_at is None
    assert checkpoints(factory, job_id) == 0
    # A terminal job is never finished twice.
    with session_scope(factory) as session:
        assert job_states.finish(session, second, JobStatus.SUCCEEDED) is None
        assert job_states.held(session, [second]) == {}
    assert read(factory, job_id).status == JobStatus.DIVERGED


def test_out_of_attempts_gives_up_with_one_message(factory: so.sessionmaker[so.Session]) -> None:
    by_claim, by_reconciler = add_job(factory), add_job(factory)
    for job_id in (by_claim, by_reconciler):
        claim(factory, job_id, lease=-1)
        claim(factory, job_id, lease=-1)
    assert claim(factory, by_claim) == (None, JobStatus.FAILED)
    with session_scope(factory) as session:
        job = session.get(Job, by_reconciler)
        assert job is not None
        job_states.give_up(session, job, utcnow())
    for job_id in (by_claim, by_reconciler):
        job = read(factory, job_id)
        assert job.status == JobStatus.FAILED
        assert job.lease_expires_at is None
        assert job.error == "gave up after 2 attempts: the worker was lost each time"


def test_fail_ends_any_attempt_but_not_an_ended_job(factory: so.sessionmaker[so.Session]) -> None:
    job_id = add_job(factory)
    claim(factory, job_id)
    add_checkpoint(factory, job_id)
    with session_scope(factory) as session:
        assert job_states.fail(session, job_id, "hard time limit") is True
    with session_scope(factory) as session:
        assert job_states.fail(session, job_id, "again") is False
    job = read(factory, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == "hard time limit"
    assert checkpoints(factory, job_id) == 0


def test_cancel_ends_a_queued_job_and_flags_a_running_one(
    factory: so.sessionmaker[so.Session],
) -> None:
    queued, running = add_job(factory), add_job(factory)
    claim(factory, running)
    with session_scope(factory) as session:
        for job_id in (queued, running):
            job = session.get(Job, job_id)
            assert job is not None
            job_states.cancel(session, job)
    assert read(factory, queued).status == JobStatus.CANCELLED
    assert read(factory, running).status == JobStatus.RUNNING
    assert read(factory, running).cancel_requested
    # A flagged job that is claimed again ends cancelled instead of running.
    with session_scope(factory) as session:
        job = session.get(Job, running)
        assert job is not None
        job.lease_expires_at = utcnow() - timedelta(seconds=1)
    assert claim(factory, running) == (None, JobStatus.CANCELLED)
    assert read(factory, running).status == JobStatus.CANCELLED


def test_prune_ends_a_held_job_at_its_rung_keeping_its_summary(
    factory: so.sessionmaker[so.Session],
) -> None:
    job_id = add_job(factory)
    attempt, _ = claim(factory, job_id)
    assert attempt is not None
    add_checkpoint(factory, job_id)
    with session_scope(factory) as session:
        job = job_states.held(session, [attempt])[job_id]
        job.steps_done = 7
        job_states.prune(session, job, 4, 2.5)
    job = read(factory, job_id)
    assert (job.status, job.pruned_at, job.pruned_loss, job.steps_done) == (
        JobStatus.PRUNED,
        4,
        2.5,
        7,
    )
    assert job.is_terminal
    assert job.finished_at is not None
    assert job.lease_expires_at is None
    assert checkpoints(factory, job_id) == 0
    # The attempt holds it no more: its own end (cancelled, at the worker) writes nothing.
    with session_scope(factory) as session:
        assert job_states.finish(session, attempt, JobStatus.CANCELLED) is None
    assert read(factory, job_id).status == JobStatus.PRUNED


def test_cancel_sweep_does_for_every_job_what_cancel_does(
    factory: so.sessionmaker[so.Session],
) -> None:
    sweep_id = add_sweep(factory, 3)
    queued, running, done = (add_job(factory, sweep_id) for _ in range(3))
    claim(factory, running)
    done_attempt, _ = claim(factory, done)
    assert done_attempt is not None
    with session_scope(factory) as session:
        job_states.finish(session, done_attempt, JobStatus.SUCCEEDED)
    with session_scope(factory) as session:
        job_states.cancel_sweep(session, sweep_id)
    assert read(factory, queued).status == JobStatus.CANCELLED
    assert read(factory, queued).finished_at is not None
    assert read(factory, running).status == JobStatus.RUNNING
    assert read(factory, running).cancel_requested
    assert read(factory, done).status == JobStatus.SUCCEEDED
    assert not read(factory, done).cancel_requested


def _status_writes(path: Path) -> list[int]:
    """Lines of `path` that assign an attribute named status or pass status= to .values()."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
        if any(isinstance(e, ast.Attribute) and e.attr == "status" for e in flat):
            lines.append(node.lineno)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "values"
            and any(k.arg == "status" for k in node.keywords)
        ):
            lines.append(node.lineno)
    return lines


def test_only_job_states_writes_a_jobs_status() -> None:
    writers = {
        str(path.relative_to(ROOT)): lines
        for package in ("service", "worker")
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := _status_writes(path))
    }
    # Exceptions' own `status` attributes are HTTP codes, not a job's status.
    writers.pop("service/api/extensions.py", None)
    writers.pop("service/cli/client.py", None)
    assert writers == {"service/job_states.py": writers.get("service/job_states.py")}
    assert writers["service/job_states.py"]


@contextlib.contextmanager
def stale_read(factory: so.sessionmaker[so.Session]) -> Iterator[tuple[so.Session, int, Job]]:
    """A new queued job, and a transaction that loaded it unlocked, as a refill reads its
    candidates: the session's copy stays in its identity map while others change the row."""
    job_id = add_job(factory)
    with factory() as stale, stale.begin():
        cached = stale.scalars(sa.select(Job).where(Job.status == JobStatus.QUEUED)).one()
        assert cached.id == job_id
        yield stale, job_id, cached


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_claim_from_a_stale_read_sees_another_workers_claim(
    factory: so.sessionmaker[so.Session],
) -> None:
    # Given a session that read the job while it was queued (a refill's candidates)
    with stale_read(factory) as (stale, job_id, cached):
        # When another pool process of the same node claims it and commits meanwhile
        other, _ = claim(factory, job_id, worker="node")
        assert other == Attempt(job_id, 1, "node")
        # Then the stale session's claim locks the row, sees that lease and refuses
        job, state = job_states.claim(stale, job_id, "node", 60.0, max_attempts=3)
        assert (job, state) == (None, "held")
        assert cached.attempts == 1
    assert read(factory, job_id).attempts == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_claim_from_a_stale_read_leaves_a_cancelled_job_cancelled(
    factory: so.sessionmaker[so.Session],
) -> None:
    # Held, as the refill holds its candidates: the session's copy stays in its identity map.
    with stale_read(factory) as (stale, job_id, cached):
        with session_scope(factory) as session:
            job = session.get_one(Job, job_id)
            job_states.cancel(session, job)
        job, state = job_states.claim(stale, job_id, "w", 60.0, max_attempts=3)
        assert (job, state) == (None, JobStatus.CANCELLED)
        assert cached.status == JobStatus.CANCELLED
    assert read(factory, job_id).status == JobStatus.CANCELLED
    assert read(factory, job_id).attempts == 0


def test_every_locked_read_goes_through_the_one_helper() -> None:
    # A locked read without populate_existing returns the session's stale copy of the row.
    callers = sorted(
        str(path.relative_to(ROOT))
        for package in ("service", "worker")
        for path in (ROOT / package).rglob("*.py")
        if "with_for_update" in path.read_text()
    )
    assert callers == ["service/db.py"]
