"""Engines and sessions: SQLite tuned for concurrent writers, PostgreSQL by URL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.engine import make_url


def _tune_sqlite(engine: sa.Engine) -> None:
    """WAL, a long busy timeout, and BEGIN IMMEDIATE for writers so they wait instead of failing."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # A deferred transaction that reads, then writes, fails at once with SQLITE_BUSY when
        # another writer got in between; writers take the lock up front and wait instead.
        # Readers stay deferred so they never hold up a writer (WAL gives them a snapshot).
        mode = connection.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN DEFERRED")


BEGIN_OPTION = "trainq_begin"
Row = TypeVar("Row")
Query = TypeVar("Query", bound=sa.Select[Any])


def make_engine(url: str, *, idle_transaction_seconds: float = 0, **kwargs: Any) -> sa.Engine:
    """Create an engine for a trainq database URL.

    With `idle_transaction_seconds` PostgreSQL ends a transaction of this engine's sessions left
    idle that long (0: never), releasing its row locks.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60}, **kwargs)
        _tune_sqlite(engine)
        return engine
    if idle_transaction_seconds > 0:
        timeout = f"-c idle_in_transaction_session_timeout={int(idle_transaction_seconds * 1000)}"
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), "options": timeout}
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


def make_session_factory(engine: sa.Engine, *, writer: bool = False) -> so.sessionmaker[so.Session]:
    """A session factory whose objects stay readable after commit.

    Writer sessions (those that read, then write) take SQLite's write lock when they begin.
    """
    bind = engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"}) if writer else engine
    return so.sessionmaker(bind, expire_on_commit=False)


@contextmanager
def session_scope(factory: so.sessionmaker[so.Session]) -> Iterator[so.Session]:
    """One short transaction: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def read_scope(factory: so.sessionmaker[so.Session]) -> Iterator[so.Session]:
    """A read-only transaction, deferred on SQLite even from a writer factory: no write lock."""
    with factory() as session:
        # The begin event reads this option when the session's transaction begins.
        session.connection(execution_options={BEGIN_OPTION: "DEFERRED"})
        try:
            yield session
        finally:
            session.rollback()


def row_count(session: so.Session, query: sa.Select) -> int:
    """How many rows the query returns, counted by the database."""
    return session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0


def locking(query: Query, *, skip_locked: bool = False) -> Query:
    """The query's rows locked for this transaction and read afresh.

    The one rule of every locked read: a row the session already holds keeps its stale
    attributes unless the locked read overwrites them (populate_existing), so a job claimed or
    cancelled by another transaction since would still look as it did (PostgreSQL).
    """
    return query.with_for_update(skip_locked=skip_locked).execution_options(populate_existing=True)


def locked(session: so.Session, model: type[Row], ident: object) -> Row | None:
    """The row of `model` with this primary key, locked and read afresh (see `locking`)."""
    return session.get(model, ident, with_for_update=True, populate_existing=True)


def database_now(session: so.Session) -> datetime:
    """The database server's current time, timezone-aware UTC.

    Leases are stamped and compared on this one clock: hosts' clocks differ, and a worker whose
    clock lags by more than a lease would have its live jobs taken for lost (SQLite's clock is
    its one host's).
    """
    if session.get_bind().dialect.name == "sqlite":
        # CURRENT_TIMESTAMP has whole seconds; this is SQLite's finest (milliseconds).
        text = session.scalar(sa.select(sa.func.strftime("%Y-%m-%d %H:%M:%f", "now")))
        return datetime.fromisoformat(str(text)).replace(tzinfo=UTC)
    # The time now, not the transaction's start (now()): a lock wait must not shorten a lease.
    stamp = session.scalar(sa.select(sa.func.clock_timestamp()))
    assert isinstance(stamp, datetime)
    return stamp.astimezone(UTC)
