"""One message's run: the worker, its configuration, its sessions, its heartbeat and its app."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy.exc
import sqlalchemy.orm as so
from celery import Celery

from service.config import Config
from service.db import session_scope
from worker.heartbeat import Heartbeat
from worker.state import heartbeat, reader_factory, session_factory, worker_config

log = logging.getLogger(__name__)
T = TypeVar("T")


def with_db_retries(config: Config, action: Callable[[], T]) -> T:
    """Run a database action, retrying with backoff while the database is unreachable."""
    deadline = time.monotonic() + config.db_retry_seconds
    delay = 0.1
    while True:
        try:
            return action()
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
            # A restarting server, a dropped connection or a busy SQLite file: all pass.
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable, retrying in %.1f s: %s", delay, error)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def crash_if_told(job_name: str | None) -> None:
    """Test hook: a job with the configured name kills its own worker process, every time."""
    if os.environ.get("TRAINQ_TESTING") != "1":
        return
    poison = os.environ.get("TRAINQ_TEST_CRASH_ON_JOB_NAME")
    if poison and job_name == poison:
        os.kill(os.getpid(), signal.SIGKILL)


class Run:
    """One message's run: this worker, its configuration, database, heartbeat and Celery app."""

    def __init__(self, worker_name: str, app: Celery) -> None:
        self.worker = worker_name
        # The task's own app: handed-back jobs are sent again through it.
        self.app = app
        self.config = worker_config()
        self.factory = session_factory()
        self.readers = reader_factory()
        self.beat: Heartbeat = heartbeat()

    def transaction(self, action: Callable[..., T], *args: Any) -> T:
        """Run action(session, *args) in one transaction, retried while the database is away."""
        return self._in(self.factory, action, *args)

    def read(self, action: Callable[..., T], *args: Any) -> T:
        """`transaction` for an action that only reads."""
        return self._in(self.readers, action, *args)

    def _in(self, factory: so.sessionmaker[so.Session], action: Callable[..., T], *args: Any) -> T:
        def attempt() -> T:
            with session_scope(factory) as session:
                return action(session, *args)

        return with_db_retries(self.config, attempt)
