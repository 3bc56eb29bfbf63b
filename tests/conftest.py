"""Real services for the suite: a Redis server, a throwaway PostgreSQL cluster, SQLite files."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient

from service.api import create_app
from service.config import Config
from service.db import make_engine, make_session_factory
from service.migrate import upgrade
from service.ops.redis_server import RedisServer, free_port
from tests.support.live_server import serving
from tests.support.postgres import PostgresServer
from tests.support.processes import WorkerProcess
from worker.state import pin_torch_threads

BACKENDS = ("sqlite", "postgresql")
# As parameters: the PostgreSQL half carries the postgres marker, so -m "not postgres" runs the
# SQLite half alone (and never starts a PostgreSQL server).
POSTGRESQL = pytest.param("postgresql", marks=pytest.mark.postgres)
BACKEND_PARAMS = ("sqlite", POSTGRESQL)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked gpu needs CUDA: skipped without it."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        import torch  # here, not at import: a run that selects no gpu test never asks

        if not torch.cuda.is_available():
            for item in gpu:
                item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture(scope="session", autouse=True)
def worker_torch_threads() -> int:
    """Reference runs in the test process use the workers' torch thread count.

    Tests compare worker results with runs made here bit for bit, and float32 matmuls round
    differently with 1 and 2 threads on some CPUs: the workers the tests start read the same
    TRAINQ_TORCH_THREADS (default 1), so this process pins the same number.
    """
    threads = Config.from_env().torch_threads
    pin_torch_threads(threads)
    return threads


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole run."""
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the whole run."""
    server = PostgresServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def broker_url(redis_server: RedisServer) -> str:
    """The broker, emptied for this test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


class DatabaseFactory:
    """Makes migrated, empty databases on SQLite or PostgreSQL, and drops them after."""

    def __init__(self, tmp_dir: Path, postgres: Callable[[], PostgresServer]) -> None:
        self.tmp_dir = tmp_dir
        self.postgres = postgres
        self.created: list[tuple[str, str]] = []

    def create(self, backend: str, migrate: bool = True) -> str:
        """A fresh database URL of the given backend."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            url = f"sqlite:///{self.tmp_dir / (name + '.sqlite3')}"
        else:
            url = self.postgres().create_database(name)
        self.created.append((backend, name))
        if migrate:
            upgrade(url)
        return url

    def drop_all(self) -> None:
        """Drop every PostgreSQL database this factory made."""
        for backend, name in self.created:
            if backend == "postgresql":
                self.postgres().drop_database(name)


@pytest.fixture(scope="module")
def databases(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[DatabaseFactory]:
    """A database maker; PostgreSQL starts only when a test asks for it."""
    factory = DatabaseFactory(
        tmp_path_factory.mktemp("db"), lambda: request.getfixturevalue("postgres_server")
    )
    yield factory
    factory.drop_all()


@pytest.fixture(params=BACKEND_PARAMS)
def database_url(request: pytest.FixtureRequest, databases: DatabaseFactory) -> str:
    """A migrated, empty database: each test runs once on SQLite and once on PostgreSQL."""
    return databases.create(request.param)


def make_test_app(database_url: str, broker_url: str, **settings: Any) -> Flask:
    """The real app factory pointed at test services."""
    config = Config.from_env(database_url=database_url, broker_url=broker_url, **settings)
    app = create_app({"TESTING": True, "TRAINQ_CONFIG": config})
    return app


@pytest.fixture
def factory(database_url: str) -> Iterator[so.sessionmaker[so.Session]]:
    """Writer sessions on a fresh database, its engine disposed after."""
    engine = make_engine(database_url)
    yield make_session_factory(engine, writer=True)
    engine.dispose()


@pytest.fixture
def app(database_url: str, broker_url: str) -> Iterator[Flask]:
    """The API app on a fresh database (no worker: jobs stay queued)."""
    app = make_test_app(database_url, broker_url)
    yield app
    app.extensions["trainq.engine"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def session(app: Flask) -> Iterator[so.Session]:
    """A session on the app's database, for assertions on rows."""
    factory = make_session_factory(app.extensions["trainq.engine"])
    with factory() as session:
        yield session


@dataclass
class Stack:
    """API app, database and live Celery workers of one backend."""

    backend: str
    database_url: str
    broker_url: str
    app: Flask
    client: FlaskClient
    sessions: so.sessionmaker[so.Session]
    workers: list[WorkerProcess]

    def submit(self, expect: int = 201, **fields: Any) -> dict[str, Any]:
        """POST a job and return its body."""
        response = self.client.post("/api/v1/jobs", json=fields)
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    def submit_sweep(self, body: dict[str, Any]) -> int:
        """POST a sweep, check it was taken, and return its id."""
        response = self.client.post("/api/v1/sweeps", json=body)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    def wait(self, job_id: int, timeout: float = 120, until: Callable | None = None) -> dict:
        """Poll until the job is terminal (or `until(job)` holds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/api/v1/jobs/{job_id}").get_json()
            done = until(job) if until else job["status"] in TERMINAL
            if done:
                return job
            time.sleep(0.1)
        logs = "\n".join(w.log_tail() for w in self.workers)
        raise AssertionError(f"job {job_id} not done in {timeout} s: {job}\n{logs}")

    def losses(self, job_id: int, **params: Any) -> dict[str, Any]:
        """The job's history from the API."""
        response = self.client.get(f"/api/v1/jobs/{job_id}/losses", query_string=params)
        assert response.status_code == 200
        return response.get_json()


TERMINAL = {"succeeded", "diverged", "failed", "cancelled", "pruned"}


@contextlib.contextmanager
def running_stack(
    backend: str,
    databases: DatabaseFactory,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
    redis_index: int,
    **worker_options: Any,
) -> Iterator[Stack]:
    """The whole service on one backend and its own Redis database: migrated database, API
    app, one worker process (two pool processes unless `worker_options` say otherwise)."""
    database_url = databases.create(backend)
    broker_url = redis_server.url.rsplit("/", 1)[0] + f"/{redis_index}"
    redis.Redis.from_url(broker_url).flushdb()
    worker = WorkerProcess(
        database_url, broker_url, tmp_path_factory.mktemp("logs"), **worker_options
    )
    worker.start()
    app = make_test_app(database_url, broker_url)
    engine = make_engine(database_url)
    try:
        yield Stack(
            backend,
            database_url,
            broker_url,
            app,
            app.test_client(),
            make_session_factory(engine),
            [worker],
        )
    finally:
        worker.stop()
        engine.dispose()
        app.extensions["trainq.engine"].dispose()


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def stack(
    request: pytest.FixtureRequest,
    databases: DatabaseFactory,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The whole service on one backend: migrated database, API app, two worker processes."""
    backend = request.param
    # Each stack gets its own Redis database so queues of two stacks never mix.
    index = 1 + BACKENDS.index(backend)
    with running_stack(backend, databases, redis_server, tmp_path_factory, index) as running:
        yield running


def count_rows(sessions: so.sessionmaker[so.Session], statement: sa.Select) -> int:
    """Run a count query."""
    with sessions() as session:
        return session.scalar(statement) or 0


@pytest.fixture(scope="module")
def live_url(stack: Stack) -> Iterator[str]:
    """The stack's API served over real HTTP on a loopback port (threaded WSGI server)."""
    with serving(stack.app) as url:
        yield url
