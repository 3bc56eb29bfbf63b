"""Probes of the database, the broker and one worker node: the healthcheck and /health use them."""

from __future__ import annotations

import sqlalchemy as sa
from celery import Celery
from celery.utils.nodenames import host_format

from service.db import make_engine


def database_failure(engine: sa.Engine) -> Exception | None:
    """None when the database answers SELECT 1, else the error it raised."""
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as error:
        return error
    return None


def broker_failure(app: Celery, timeout: float) -> Exception | None:
    """None when the broker answers PING within timeout seconds, else the error it raised."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
            connection.default_channel.client.ping()
    except Exception as error:
        return error
    return None


def _described(error: Exception | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}".splitlines()[0]


def database_error(url: str) -> str | None:
    """None when the database at url answers, else what went wrong."""
    # A probe must answer within the healthcheck's timeout, not wait on an unreachable server.
    if url.startswith("sqlite"):
        engine = make_engine(url)
    else:
        engine = make_engine(url, connect_args={"connect_timeout": 5})
    try:
        return _described(database_failure(engine))
    finally:
        engine.dispose()


def broker_error(app: Celery) -> str | None:
    """None when the broker answers PING, else what went wrong."""
    return _described(broker_failure(app, timeout=5))


def node_name(pattern: str) -> str:
    """A Celery node name with %h (this machine's hostname), %n and %d filled in, as Celery does."""
    return host_format(pattern)


def worker_answers(app: Celery, node: str, timeout: float) -> bool:
    """Whether the Celery worker `node` replies to a ping through the broker."""
    replies = app.control.ping(destination=[node], timeout=timeout)
    return any(node in reply for reply in replies)
