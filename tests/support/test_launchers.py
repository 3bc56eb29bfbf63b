"""Launch real redis-server and postgres processes and check their lifecycles."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.ops.redis_server import RedisServer, find_redis_server, free_port

from .postgres import PostgresServer, find_pg_bindir
from .processes import live_processes


def _pid_gone(pid: int) -> bool:
    """Whether no process (not even a zombie) holds pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _group_members(pgid: int) -> list[int]:
    """PIDs of live processes in process group pgid (Linux /proc)."""
    return [p.pid for p in live_processes() if p.group == pgid]


def _skip_without(find_binary: Callable[[], object]) -> None:
    """Skip the test when `find_binary` finds no server binary."""
    try:
        find_binary()
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def redis_binary() -> None:
    """Skip when no redis-server binary exists."""
    _skip_without(find_redis_server)


@pytest.fixture
def pg_binaries() -> None:
    """Skip when PostgreSQL server binaries are missing."""
    _skip_without(find_pg_bindir)


@pytest.fixture
def postgres(pg_binaries: None) -> Iterator[PostgresServer]:
    """A running throwaway cluster, removed afterwards."""
    with PostgresServer() as server:
        yield server


def test_redis_set_get_and_clean_stop(tmp_path: Path, redis_binary: None) -> None:
    server = RedisServer(free_port(), tmp_path / "redis")
    with server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with redis.Redis.from_url(server.url) as client:
            client.set("k", "v")
            assert client.get("k") == b"v"
            assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        pid = server.pid
        assert pid is not None
    assert not server.is_running()
    assert server.pid is None
    assert _pid_gone(pid)
    assert (tmp_path / "redis" / "redis-server.log").stat().st_size > 0


def test_redis_password_enforced(tmp_path: Path, redis_binary: None) -> None:
    # Leading "--" and URL-special characters: both used to be traps.
    password = "--s3cr:t/@pw d"
    with RedisServer(free_port(), tmp_path, password=password) as server:
        assert ":--s3cr%3At%2F%40pw%20d@" in server.url
        # No retries: redis-py 8 retries AuthenticationError (a ConnectionError)
        # with backoff by default, costing ~4 s here.
        with (
            redis.Redis(port=server.port, retry=Retry(NoBackoff(), 0)) as anonymous,
            pytest.raises(redis.exceptions.AuthenticationError),
        ):
            anonymous.set("k", "v")
        with redis.Redis.from_url(server.url) as client:
            assert client.set("k", "v")
        # The password travels over stdin, never on the visible command line.
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert b"s3cr" not in cmdline


def test_redis_aof_survives_kill(tmp_path: Path, redis_binary: None) -> None:
    server = RedisServer(free_port(), tmp_path, appendonly=True)
    with server:
        with redis.Redis.from_url(server.url) as client:
            client.set("durable", "yes")
        # Redis 6 writes appendonly.aof; Redis 7+ an appendonlydir/ manifest.
        aof = tmp_path / "appendonly.aof"
        assert (aof.exists() and aof.stat().st_size > 0) or (tmp_path / "appendonlydir").is_dir()
        pid = server.pid
        assert pid is not None
        server.kill()
        assert not server.is_running()
        assert _pid_gone(pid)
        server.restart()
        with redis.Redis.from_url(server.url) as client:
            assert client.get("durable") == b"yes"


@pytest.mark.postgres
def test_postgres_database_roundtrip(postgres: PostgresServer) -> None:
    url = postgres.create_database("trainq_test")
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/trainq_test"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE jobs (id serial PRIMARY KEY, name text)"))
            conn.execute(sa.text("INSERT INTO jobs (name) VALUES ('a'), ('b')"))
        with engine.connect() as conn:
            names = conn.execute(sa.text("SELECT name FROM jobs ORDER BY id")).scalars().all()
        assert names == ["a", "b"]
    finally:
        engine.dispose()
    postgres.drop_database("trainq_test")
    with postgres.connect() as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'trainq_test'").fetchone()
    assert row is None


@pytest.mark.postgres
def test_postgres_kill_restart_and_stop(pg_binaries: None) -> None:
    server = PostgresServer()
    try:
        server.start()
        port, base = server.port, server.base_dir
        assert base is not None
        assert (server.socket_dir / f".s.PGSQL.{port}").exists()
        with server.connect() as conn:
            # synchronous_commit=off (the fast default) may lose the last
            # commits to a SIGKILL; a fault test that needs them opts back in.
            conn.execute("SET synchronous_commit = on")
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        server.kill()
        assert not server.is_running()
        server.restart()
        assert server.port == port
        with server.connect() as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
        pid = server.pid
        assert pid is not None
        server.stop()
        assert _pid_gone(pid)
        assert _group_members(pid) == []
        assert not (server.data_dir / "postmaster.pid").exists()
    finally:
        server.cleanup()
    assert not base.exists()
