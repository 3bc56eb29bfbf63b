"""Throwaway PostgreSQL cluster for tests, in its own temp dir and port."""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import psycopg
from psycopg import sql

from service.ops.local_server import LocalServer
from service.ops.redis_server import free_port

SUPERUSER = "postgres"
# Settings that trade durability for speed: the cluster is disposable.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


def find_pg_bindir() -> Path:
    """Return the directory holding matching initdb and postgres binaries."""
    on_path = shutil.which("initdb")
    # Debian keeps server binaries out of PATH; take the newest installed major.
    candidates = [on_path] if on_path else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
        reverse=True,
    )
    for initdb in candidates:
        # Resolve symlinks so postgres comes from the same major as initdb.
        bindir = Path(os.path.realpath(initdb)).parent
        if (bindir / "postgres").is_file():
            return bindir
    raise RuntimeError("PostgreSQL server binaries (initdb, postgres) not found")


class PostgresServer(LocalServer):
    """A disposable PostgreSQL cluster listening on 127.0.0.1 and a unix socket."""

    program = "postgres"
    # SIGINT = "pg_ctl stop -m fast": abort sessions, checkpoint, exit; the data is kept.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        *,
        port: int | None = None,
        parent_dir: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        """Configure the cluster; nothing is created until start()."""
        self._port = port
        # Under root the parent must be traversable by the postgres user, which
        # rules out pytest's tmp_path (0700, root-owned); default is $TMPDIR.
        self._parent_dir = parent_dir
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.base_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._bindir = find_pg_bindir()

    @property
    def port(self) -> int:
        """TCP port; fixed at first start so restarts keep handed-out URLs valid."""
        if self._port is None:
            self._port = free_port()
        return self._port

    @property
    def data_dir(self) -> Path:
        """PGDATA of the cluster."""
        return self._base() / "data"

    @property
    def socket_dir(self) -> Path:
        """Directory holding the unix socket."""
        return self._base() / "sock"

    @property
    def log_path(self) -> Path:
        """Server log file."""
        return self._base() / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default postgres database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        """SQLAlchemy URL of database `name` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{quote(name, safe='')}"

    def _base(self) -> Path:
        """Create (once) the temp dir that holds data, socket and log."""
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="trainq-pg-", dir=self._parent_dir))
            # A crashed test run must not leave a postmaster and its files behind.
            atexit.register(self.cleanup)
            (self.base_dir / "sock").mkdir()
            if os.geteuid() == 0:
                owner = pwd.getpwnam(SUPERUSER)
                for path in (self.base_dir, self.base_dir / "sock"):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
        return self.base_dir

    def _as_owner(self) -> dict[str, Any]:
        """Popen kwargs that drop to the postgres user when we are root."""
        # initdb and postgres refuse to run as root. Popen's own setuid beats
        # runuser: no PAM/util-linux dependency, and the pid is postgres's own.
        if os.geteuid() != 0:
            return {}
        return {"user": SUPERUSER, "group": SUPERUSER, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        """Environment for server binaries, with a locale that always exists."""
        # A developer's PGDATA/PGPORT/... must not redirect our throwaway cluster.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _initdb(self) -> None:
        """Create the cluster files."""
        result = subprocess.run(
            [
                str(self._bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=self._base(),
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            **self._as_owner(),
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def start(self, timeout: float = 30) -> Self:
        """Create the cluster if needed, start postgres and wait for connections."""
        if self.is_running():
            raise RuntimeError(f"postgres already running (pid {self._proc.pid})")
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        cmd = [
            str(self._bindir / "postgres"),
            "-D", str(self.data_dir),
            "-c", f"port={self.port}",
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.socket_dir}",
        ]  # fmt: skip
        for key, value in self.settings.items():
            cmd += ["-c", f"{key}={value}"]
        self._spawn(
            cmd,
            cwd=self._base(),
            env=self._env(),
            stdin=subprocess.DEVNULL,
            **self._as_owner(),
        )
        self._wait_ready(timeout, f"postgres on port {self.port} not ready")
        return self

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """Open an autocommit psycopg connection over TCP."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=SUPERUSER,
            dbname=dbname,
            connect_timeout=2,
            autocommit=True,
        )

    def _answers(self) -> bool:
        """Whether a connection opens now."""
        try:
            with self.connect():
                return True
        except psycopg.OperationalError:
            # Not listening yet, or "the database system is starting up"
            # while crash recovery replays WAL after kill().
            return False

    def create_database(self, name: str) -> str:
        """Create database `name` and return its SQLAlchemy URL."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, terminating sessions still connected to it."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def restart(self, timeout: float = 30) -> Self:
        """Stop (if running) and start again on the same port and data."""
        self.stop()
        return self.start(timeout)

    def cleanup(self) -> None:
        """Stop the server and delete the temp dir with all its data."""
        self.stop()
        if self.base_dir is not None:
            atexit.unregister(self.cleanup)
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
