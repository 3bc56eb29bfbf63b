"""The real app in process (Flask's test client, no socket) on a migrated database of a backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask

from service.api import create_app
from service.config import Config
from service.migrate import upgrade


@contextmanager
def migrated_database(backend: str, tmp: Path, name: str = "bench") -> Iterator[str]:
    """The URL of an empty database at the latest revision: a SQLite file in `tmp`, or a
    throwaway PostgreSQL cluster removed afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp / f'{name}.sqlite3'}"
        upgrade(url)
        yield url
        return
    from tests.support.postgres import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        url = server.create_database(f"b_{uuid.uuid4().hex[:8]}")
        upgrade(url)
        yield url
    finally:
        server.cleanup()


@contextmanager
def app_in_process(database_url: str, broker_url: str) -> Iterator[Flask]:
    """`create_app` on the database and broker; its engine disposed afterwards."""
    config = Config.from_env(database_url=database_url, broker_url=broker_url)
    app = create_app({"TESTING": True, "TRAINQ_CONFIG": config})
    try:
        yield app
    finally:
        app.extensions["trainq.engine"].dispose()
