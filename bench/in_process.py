"""The real app in process (Flask's test client, no socket) on a migrated database of a backend,
and the loop of the benchmarks that run once per backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import argparse
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask

from service.api import create_app
from service.config import Config
from service.migrate import upgrade
from service.ops.redis_server import RedisServer, free_port


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


def parse_with_backends(parser: argparse.ArgumentParser, record: bool = True) -> argparse.Namespace:
    """The benchmark's arguments, with --backends (and --no-record, where it appends) added last."""
    parser.add_argument("--backends", default="sqlite,postgresql")
    if record:
        parser.add_argument("--no-record", action="store_true", help="print, do not append")
    return parser.parse_args()


def each_database(backends: str, tmp: Path, name: str = "bench") -> Iterator[tuple[str, str]]:
    """(backend, URL of an empty migrated database) for each of a comma-separated list of
    backends, in its order, one at a time: a PostgreSQL cluster is removed when its turn ends."""
    for backend in backends.split(","):
        with migrated_database(backend, tmp, name) as url:
            yield backend, url


@contextmanager
def redis_in_temporary_dir(prefix: str) -> Iterator[tuple[Path, RedisServer]]:
    """A new temporary directory and a real Redis server kept in it, stopped afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    with RedisServer(free_port(), tmp / "redis") as server:
        yield tmp, server
