"""`trainq up` as a user runs it: a killed component comes back, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from service.ops.redis_server import free_port
from tests.faults.conftest import FIGURES, SMALL
from tests.support.processes import kill_group, live_processes, spawn_logged
from tests.support.waiting import wait_until


def sessions_of(leaders: set[int]) -> set[int]:
    """Every live process whose session one of the leaders started (a component's whole tree)."""
    return {p.pid for p in live_processes() if p.session in leaders}


def redis_on(port: int) -> set[int]:
    """PIDs of redis-server processes serving the given port."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"redis-server") and str(port).encode() in argv:
                found.add(int(cmdline.parent.name))
    return found


def wait_for(predicate, timeout: float, what: str, log: Path) -> None:  # type: ignore[no-untyped-def]
    wait_until(
        predicate, timeout, lambda: f"{what}:\n{log.read_text(errors='replace')[-4000:]}", 0.2
    )


def started(log: Path, name: str) -> list[int]:
    """PIDs the supervisor reported starting for a component, in order."""
    return [int(p) for p in re.findall(rf"started {name} \(pid (\d+)\)", log.read_text())]


@pytest.fixture
def trainq_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str, int]]:
    """A real `trainq up` on free ports with its state under a temporary directory."""
    port, redis_port = free_port(), free_port()
    env = dict(os.environ)
    env.pop("TRAINQ_BROKER_URL", None)
    env.pop("TRAINQ_DATABASE_URL", None)
    env.update(
        TRAINQ_REDIS_PORT=str(redis_port),
        TRAINQ_VAR_DIR=str(tmp_path / "var"),
        TRAINQ_RECONCILE_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "up.log"
    process = spawn_logged(
        [sys.executable, "-m", "service.cli", "up", "--port", str(port), "--concurrency", "1"],
        env,
        log,
    )
    try:
        yield process, log, f"http://127.0.0.1:{port}", redis_port
    finally:
        if process.poll() is None:
            kill_group(process)


def test_trainq_up_restarts_a_killed_worker_and_stops_everything_on_ctrl_c(
    trainq_up: tuple[subprocess.Popen[bytes], Path, str, int],
) -> None:
    process, log, url, redis_port = trainq_up

    def healthy() -> bool:
        with contextlib.suppress(requests.RequestException):
            body = requests.get(f"{url}/health", timeout=2).json()
            return body.get("status") == "ok" and bool(body.get("workers", {}).get("cpu"))
        return False

    wait_for(healthy, 120, "a healthy service with a worker", log)
    (first_worker,) = started(log, "worker-cpu")
    # When the worker's whole process group is killed
    os.killpg(first_worker, signal.SIGKILL)
    FIGURES["faults_injected"] += 1
    # Then the supervisor starts a new one, and a job still succeeds
    wait_for(lambda: len(started(log, "worker-cpu")) == 2, 30, "a restarted worker", log)
    job = requests.post(f"{url}/api/v1/jobs", json={**SMALL, "iterations": 200}, timeout=10)
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    wait_for(
        lambda: (
            requests.get(f"{url}/api/v1/jobs/{job_id}", timeout=5).json()["status"] == "succeeded"
        ),
        120,
        "the job to succeed",
        log,
    )
    FIGURES["jobs_checked"] += 1
    # And Ctrl-C stops the supervisor and every process it started
    leaders = {pid for name in ("api", "worker-cpu", "reconciler") for pid in started(log, name)}
    leaders |= redis_on(redis_port)
    assert len(sessions_of(leaders)) >= 5, "api, worker and its pool, reconciler, redis"
    os.kill(process.pid, signal.SIGINT)
    assert process.wait(60) == 0, log.read_text()[-3000:]
    deadline = time.monotonic() + 10
    while sessions_of(leaders) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sessions_of(leaders) == set()
    assert redis_on(redis_port) == set()
    assert "all stopped" in log.read_text()
