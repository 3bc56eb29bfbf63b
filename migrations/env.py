"""Alembic environment: trainq's models and the configured database URL."""

from __future__ import annotations

from alembic import context

from service.config import Config
from service.db import make_engine
from service.models import Base

target_metadata = Base.metadata


def _url() -> str:
    return context.config.attributes.get("database_url") or Config.from_env().database_url


def run_migrations_offline() -> None:
    """Emit SQL without a connection."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations over a live connection."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _foreign_keys_off(connection)
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                _check_foreign_keys(connection)
    finally:
        if sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def _foreign_keys_off(connection) -> None:  # type: ignore[no-untyped-def]
    # A batch migration copies a table and drops the old one: with foreign keys on, that DROP
    # deletes every child row in cascade. SQLite ignores the PRAGMA inside a transaction, so it
    # goes straight to the driver's connection before the migrations' transaction begins.
    raw = connection.connection.driver_connection
    raw.execute("PRAGMA foreign_keys=OFF")
    if raw.execute("PRAGMA foreign_keys").fetchone()[0]:
        raise RuntimeError("SQLite foreign keys still on: is a transaction already open?")


def _check_foreign_keys(connection) -> None:  # type: ignore[no-untyped-def]
    # What the keys would have refused, checked before the migrations commit.
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"migrations left rows breaking foreign keys: {broken[:10]}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
