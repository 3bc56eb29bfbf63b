"""`trainq up` as a user runs it: real processes, real HTTP, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from service.ops.redis_server import free_port
from tests.support.processes import ROOT
from tests.support.waiting import wait_until

STAGES = ("tensors", "autograd", "nn", "optim", "module")


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) processes below pid, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


@pytest.fixture
def trainq_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = dict(os.environ, TRAINQ_VAR_DIR=str(tmp_path / "var"), TRAINQ_REDIS_PORT=str(free_port()))
    env.pop("TRAINQ_BROKER_URL", None)
    env.pop("TRAINQ_DATABASE_URL", None)
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "up", "--port", str(port), "--concurrency", "2"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                health = requests.get(f"{url}/health", timeout=10)
                if health.status_code == 200 and health.json()["workers"]["cpu"]:
                    break
            except requests.RequestException:
                pass  # still starting (or slow under load): ask again
            assert process.poll() is None, (tmp_path / "up.log").read_text()
            time.sleep(0.3)
        else:
            raise AssertionError(
                "trainq up never became healthy:\n" + (tmp_path / "up.log").read_text()
            )
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def test_up_serves_every_stage_then_stops_cleanly(
    trainq_up: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    process, url = trainq_up
    # It says "ready" once a worker is up, after the banner (which names the web pages).
    log = tmp_path / "up.log"
    assert f"web pages {url}/," in log.read_text()
    wait_until(lambda: "ready: " in log.read_text(), 30, lambda: log.read_text())
    banner, ready = (log.read_text().index(text) for text in ("trainq is up", "ready: "))
    assert banner < ready
    assert f"ready: {url} takes jobs, live workers per queue cpu: 1" in log.read_text()
    ids = {}
    for stage in STAGES:
        response = requests.post(f"{url}/api/v1/jobs", json={"stage": stage}, timeout=10)
        assert response.status_code == 201, response.text
        ids[stage] = response.json()["id"]
    deadline = time.monotonic() + 120
    jobs = {}
    while time.monotonic() < deadline and len(jobs) < len(ids):
        for stage, job_id in ids.items():
            job = requests.get(f"{url}/api/v1/jobs/{job_id}", timeout=10).json()
            if job["status"] in ("succeeded", "diverged", "failed", "cancelled"):
                jobs[stage] = job
        time.sleep(0.3)
    assert {stage: job["status"] for stage, job in jobs.items()} == dict.fromkeys(
        STAGES, "succeeded"
    )
    for stage, job in jobs.items():
        history = requests.get(f"{url}/api/v1/jobs/{job['id']}/losses", timeout=10).json()
        assert history["steps"] == list(range(500)), stage
    assert (tmp_path / "var" / "trainq.sqlite3").exists()

    children = descendants(process.pid)
    assert len(children) >= 5  # redis, gunicorn, celery and its pool, reconciler
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.2)
    assert [pid for pid in children if alive(pid)] == []
