"""Engines: a worker's transaction left idle is ended by PostgreSQL, releasing its row locks."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import sqlalchemy.exc

from service.config import Limits
from service.db import make_engine, make_session_factory, session_scope
from service.jobs import new_job
from service.jobspec import validate_job
from service.models import Job
from tests.support.waiting import wait_until


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_frozen_workers_row_lock_is_released_after_its_idle_timeout(database_url: str) -> None:
    # Given a job row locked by a worker-style session that then goes quiet (frozen)
    worker = make_engine(database_url, idle_transaction_seconds=1)
    other = make_engine(database_url)
    try:
        with session_scope(make_session_factory(other)) as session:
            job = new_job(validate_job({"stage": "tensors"}, Limits()), "cpu")
            session.add(job)
        frozen = make_session_factory(worker)()
        frozen.execute(sa.select(Job).where(Job.id == job.id).with_for_update())

        def lockable() -> bool:
            with make_session_factory(other)() as session:
                locked = sa.select(Job.id).where(Job.id == job.id).with_for_update(nowait=True)
                try:
                    return session.execute(locked).first() is not None
                except sqlalchemy.exc.OperationalError:
                    return False

        # When no statement comes: at first the row stays locked
        assert not lockable()
        # Then the server ends that transaction, and another session can lock the row
        wait_until(lockable, 30, "the frozen session's lock released")
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="idle-in-transaction timeout"):
            frozen.execute(sa.select(1))
        frozen.close()
        with worker.connect() as connection:
            shown = connection.exec_driver_sql("SHOW idle_in_transaction_session_timeout")
            assert shown.scalar() == "1s"
    finally:
        worker.dispose()
        other.dispose()
