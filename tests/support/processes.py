"""Real server processes for tests (Celery workers), started and stopped as a deployment would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from service.ops.local_server import log_tail

ROOT = Path(__file__).resolve().parents[2]


def spawn_logged(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Run `argv` from the repository root in a session of its own, its output added to the log."""
    # Its own session: the whole tree can be killed as one group without touching the test runner.
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process's whole group (a crash of it and its children) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


@dataclass(frozen=True)
class ProcessStat:
    """A live process's ids, from /proc/<pid>/stat."""

    pid: int
    parent: int
    group: int
    session: int


def live_processes() -> Iterator[ProcessStat]:
    """Every process on the machine that is alive (not a zombie), Linux only."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the ")" (comm may hold spaces): state, ppid, pgrp, session, ...
            state, parent, group, session = stat.read_text().rsplit(")", 1)[1].split()[:4]
            found = ProcessStat(int(stat.parent.name), int(parent), int(group), int(session))
        except (OSError, IndexError, ValueError):
            continue  # it ended while we read
        if state != "Z":
            yield found


class LoggedProcess:
    """A process group run from `argv` with `env`, logging to `log_path`, ready when `_ready`."""

    what = "process"
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 60) -> Self:
        """Start the process in its own group and wait until it is ready (stop it if never)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = spawn_logged(self.argv, self.env, self.log_path)
        deadline = time.monotonic() + timeout
        try:
            while not self._ready():
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.what} exited early:\n{self.log_tail()}")
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"{self.what} not ready in {timeout} s:\n{self.log_tail()}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, lines: int = 40) -> str:
        """The end of the process's log."""
        return log_tail(self.log_path, lines)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (a warm, graceful shutdown), then SIGKILL the whole group."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        kill_group(self.process)


class WorkerProcess(LoggedProcess):
    """One `celery worker` process tree, pointed at a database and a broker."""

    what = "worker"

    def __init__(
        self,
        database_url: str,
        broker_url: str,
        log_dir: Path,
        *,
        name: str = "cpu",
        queues: str = "cpu",
        concurrency: int = 2,
        pool: str = "prefork",
        extra_env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.log_path = Path(log_dir) / f"worker-{name}.log"
        self.env = dict(os.environ)
        self.env.update(
            TRAINQ_DATABASE_URL=database_url,
            TRAINQ_BROKER_URL=broker_url,
            TRAINQ_FLUSH_SECONDS="0.2",
            PYTHONUNBUFFERED="1",
        )
        self.env.update(extra_env or {})
        # `prefix` runs the worker elsewhere, e.g. inside a network namespace (tests/support/netns).
        self.argv = [
            *prefix, sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "--queues", queues, "--pool", pool, "--concurrency", str(concurrency),
            "--hostname", f"{name}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip

    def _ready(self) -> bool:
        with contextlib.suppress(OSError):  # no log yet
            return " ready." in self.log_path.read_text(errors="replace")
        return False

    def children(self) -> list[int]:
        """PIDs of the pool processes (Linux /proc)."""
        if self.process is None:
            return []
        return [p.pid for p in live_processes() if p.parent == self.process.pid]
