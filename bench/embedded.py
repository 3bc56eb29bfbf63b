"""The embedded service (`trainq up`) as a subprocess, on free ports and a temporary var dir."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from service.ops.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
_RUNNING: set[EmbeddedService] = set()


def pythonpath() -> str:
    """PYTHONPATH for a child that imports the repository's packages: ROOT in front of ours."""
    # Added in front, not replacing: a GPU machine's wheels come in on PYTHONPATH.
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def kill_processes_with_env(name: str, value: str) -> list[int]:
    """SIGKILL every process (not this one) whose environment has name=value; their pids."""
    marker = f"{name}={value}".encode()
    killed = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        pid = int(environ.parent.name)
        try:
            if pid != os.getpid() and marker in environ.read_bytes().split(b"\0"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        except (OSError, ValueError):
            continue  # gone already, or not ours to read
    return killed


def _on_sigterm(signum: int, _frame: object) -> None:
    """A benchmark stopped by `timeout`: stop every service it started, then exit."""
    for service in list(_RUNNING):
        service.stop(wait=15)
    raise SystemExit(128 + signum)


def _stop_on_sigterm(service: EmbeddedService) -> None:
    """Make SIGTERM stop this service (and any other running) before the process ends."""
    _RUNNING.add(service)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


class EmbeddedService:
    """`trainq up` started for one benchmark and stopped after it."""

    def __init__(
        self,
        concurrency: int | None = None,
        extra_env: dict | None = None,
        queues: tuple[str, ...] = ("cpu",),
    ) -> None:
        self.queues = queues
        self.var_dir = Path(tempfile.mkdtemp(prefix="trainq-bench-"))
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update(
            TRAINQ_VAR_DIR=str(self.var_dir),
            TRAINQ_REDIS_PORT=str(free_port()),
            PYTHONPATH=pythonpath(),
            **(extra_env or {}),
        )
        self.argv = [sys.executable, "-m", "service.cli", "up", "--port", str(self.port)]
        if concurrency:
            self.argv += ["--concurrency", str(concurrency)]
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()

    @property
    def database_url(self) -> str:
        """The service's SQLite database."""
        return f"sqlite:///{self.var_dir / 'trainq.sqlite3'}"

    @property
    def broker_url(self) -> str:
        """The service's embedded Redis."""
        return f"redis://127.0.0.1:{self.env['TRAINQ_REDIS_PORT']}/0"

    def start(self, timeout: float = 120) -> EmbeddedService:
        """Start trainq up and wait until the API answers with live workers on our queues."""
        _stop_on_sigterm(self)
        log = open(self.var_dir / "up.log", "ab")  # noqa: SIM115 (kept open for the child)
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                health = self.http.get(f"{self.url}/health", timeout=2).json()
                workers = health.get("workers", {})
                if all(workers.get(queue) for queue in self.queues):
                    return self
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"trainq up did not become healthy; see {self.var_dir}/up.log")

    def stop(self, wait: float = 60) -> None:
        """Ctrl-C the supervisor and wait for it to stop everything; kill what is left."""
        _RUNNING.discard(self)
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
        # The supervisor starts each component in a session of its own: any that outlived it
        # still carries this service's var dir in its environment.
        kill_processes_with_env("TRAINQ_VAR_DIR", str(self.var_dir))
        self.http.close()

    def read(self, sql: str, parameters: tuple[object, ...]) -> list[sqlite3.Row]:
        """Rows of one query straight from the service's SQLite file, off the API's path."""
        with sqlite3.connect(self.var_dir / "trainq.sqlite3", timeout=30) as db:
            db.row_factory = sqlite3.Row
            return db.execute(sql, parameters).fetchall()

    def count_unfinished(self, job_ids: list[int]) -> int:
        """Jobs of job_ids not yet terminal (read straight from SQLite, off the API's path)."""
        ((count,),) = self.read(
            "SELECT count(*) FROM jobs WHERE id BETWEEN ? AND ? AND status IN "
            "('queued', 'running')",
            (min(job_ids), max(job_ids)),
        )
        return count

    def wait_all(self, job_ids: list[int], timeout: float = 3600, poll: float = 0.05) -> float:
        """Wait until every job is terminal; the monotonic time it was seen so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count_unfinished(job_ids) == 0:
                return time.monotonic()
            time.sleep(poll)
        raise TimeoutError(f"jobs not finished in {timeout} s")

    def submit_sweep(self, request: dict) -> dict:
        """POST /api/v1/sweeps; the created sweep."""
        response = self.http.post(f"{self.url}/api/v1/sweeps", json=request, timeout=60)
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/v1/sweeps: {response.status_code} {response.text}")
        return response.json()

    def sweep_progress(self, sweep_id: int) -> dict[str, int]:
        """A sweep's jobs per status and steps recorded (read straight from SQLite)."""
        rows = self.read(
            "SELECT status, count(*), coalesce(sum(steps_done), 0) FROM jobs "
            "WHERE sweep_id = ? GROUP BY status",
            (sweep_id,),
        )
        progress = {status: count for status, count, _ in rows}
        progress["steps"] = sum(steps for _, _, steps in rows)
        return progress

    def sweep_jobs(self, sweep_id: int) -> list[dict[str, Any]]:
        """The sweep's jobs as stored, in id order (read straight from SQLite)."""
        rows = self.read(
            "SELECT id, optimizer, init, lr, status, steps_done, final_loss, pruned_at, "
            "stack_size, started_at, finished_at FROM jobs WHERE sweep_id = ? ORDER BY id",
            (sweep_id,),
        )
        return [dict(row) for row in rows]

    def wait_sweep(self, sweep_id: int, timeout: float = 3600, poll: float = 0.05) -> float:
        """Wait until every job of the sweep is terminal; the monotonic time it was seen so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            progress = self.sweep_progress(sweep_id)
            if not progress.get("queued") and not progress.get("running"):
                return time.monotonic()
            time.sleep(poll)
        raise TimeoutError(f"sweep {sweep_id} not finished in {timeout} s")

    def __enter__(self) -> EmbeddedService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
