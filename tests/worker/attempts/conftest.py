"""Fixtures of the attempt tests: a fresh database's writer sessions, and jobs in it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy.orm as so

from service.db import session_scope
from service.jobs import new_job
from service.jobspec import validate_job


@pytest.fixture
def make_job(factory: so.sessionmaker[so.Session]) -> Callable[[], int]:
    """Add a queued ten-step job; its id."""

    def make() -> int:
        with session_scope(factory) as session:
            job = new_job(validate_job({"stage": "nn", "iterations": 10}), "cpu")
            session.add(job)
        return job.id

    return make
