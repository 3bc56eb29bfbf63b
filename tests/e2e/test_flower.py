"""Celery Flower sees trainq: a real Flower process reads a real worker's finished task."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from service.ops.redis_server import free_port
from tests.conftest import DatabaseFactory, make_test_app
from tests.support.processes import ROOT, WorkerProcess
from tests.support.waiting import wait_until

AUTH = ("admin", "flower-secret")


def _json(url: str) -> Any:
    try:
        response = requests.get(url, auth=AUTH, timeout=5)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def test_flower_lists_a_finished_task_with_its_worker(
    databases: DatabaseFactory, broker_url: str, tmp_path: Path
) -> None:
    # Given Flower (`trainq flower`) on the broker, then a worker that sends events
    database_url = databases.create("sqlite")
    env = {**os.environ, "TRAINQ_DATABASE_URL": database_url, "TRAINQ_BROKER_URL": broker_url}
    port = free_port()
    flower_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "flower.log"
    with open(log_path, "wb") as log:
        flower = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "flower", "--port", str(port),
             f"--basic-auth={AUTH[0]}:{AUTH[1]}"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    worker = WorkerProcess(database_url, broker_url, tmp_path, name="flowered", concurrency=1)
    # Heartbeats on, as `trainq worker` runs: Flower learns the worker from its events.
    worker.argv.remove("--without-heartbeat")
    app = make_test_app(database_url, broker_url)

    def flower_log() -> str:
        return log_path.read_text(errors="replace")[-3000:] + "\n" + worker.log_tail()

    try:
        wait_until(lambda: _json(f"{flower_url}/api/tasks") is not None, 60, flower_log, 0.2)
        worker.start()

        def worker_seen() -> bool:
            listed = _json(f"{flower_url}/workers?json=1") or {"data": []}
            return any(w.get("hostname", "").startswith("flowered@") for w in listed["data"])

        wait_until(worker_seen, 60, flower_log, 0.2)
        # When a job is submitted and trained
        client = app.test_client()
        job = client.post("/api/v1/jobs", json={"stage": "nn", "iterations": 20}).get_json()
        wait_until(
            lambda: client.get(f"/api/v1/jobs/{job['id']}").get_json()["status"] == "succeeded",
            60,
            flower_log,
            0.1,
        )

        # Then Flower's own HTTP API lists the task: its name, args, state and worker
        def finished_task() -> dict[str, Any] | None:
            tasks = _json(f"{flower_url}/api/tasks?state=SUCCESS") or {}
            for task_id, task in tasks.items():
                if task.get("args") == f"[{job['id']}]":
                    return {"uuid": task_id, **task}
            return None

        task = wait_until(finished_task, 30, flower_log, 0.2)
        info = _json(f"{flower_url}/api/task/info/{task['uuid']}")
        assert info["name"] == "trainq.train_job"
        assert info["state"] == "SUCCESS"
        assert info["worker"].startswith("flowered@")
        # task-sent from the API: Flower knows when the message left, before it was received
        assert info["sent"] is not None
        assert info["received"] is not None
        assert info["sent"] <= info["received"] <= info["succeeded"]
        # And without credentials Flower answers nothing
        assert requests.get(f"{flower_url}/api/tasks", timeout=5).status_code == 401
    finally:
        worker.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(flower.pid, signal.SIGTERM)
        try:
            flower.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(flower.pid, signal.SIGKILL)
            flower.wait(10)
        app.extensions["trainq.engine"].dispose()
