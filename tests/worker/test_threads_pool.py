"""The threads pool (the GPU worker's) under a real worker on the CPU: time limit, CUDA errors."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.conftest import TERMINAL, DatabaseFactory, make_test_app
from tests.support.processes import WorkerProcess
from tests.support.waiting import wait_until
from worker.device_errors import EXIT_DEVICE_BROKEN

SMALL = {"stage": "optim", "N": 8, "D_in": 20, "H": 16, "D_out": 3, "iterations": 200}


class ThreadsWorker:
    """A threads-pool worker on the cpu queue, its database and an API client."""

    def __init__(self, databases: DatabaseFactory, broker_url: str, logs: Path) -> None:
        self.database_url = databases.create("sqlite")
        self.broker_url = broker_url
        self.logs = logs
        self.app = make_test_app(self.database_url, broker_url)
        self.client: FlaskClient = self.app.test_client()
        self.workers: list[WorkerProcess] = []

    def start(self) -> WorkerProcess:
        """Start one more worker (a fresh one after the last died)."""
        worker = WorkerProcess(
            self.database_url,
            self.broker_url,
            self.logs,
            name=f"threads{len(self.workers)}",
            pool="threads",
            concurrency=1,
            extra_env={
                "TRAINQ_JOB_SOFT_LIMIT_SECONDS": "0",
                "TRAINQ_JOB_HARD_LIMIT_SECONDS": "3",
                "TRAINQ_TESTING": "1",
                "TRAINQ_TEST_CUDA_ERROR_ON_JOB_NAME": "broken-gpu",
            },
        )
        self.workers.append(worker)
        return worker.start(timeout=90)

    def submit(self, **fields: object) -> int:
        """POST a job; its id."""
        response = self.client.post("/api/v1/jobs", json=fields)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    def job(self, job_id: int) -> dict:
        """The job as the API shows it."""
        return self.client.get(f"/api/v1/jobs/{job_id}").get_json()

    def wait(self, job_id: int, until: Callable[[dict], bool], timeout: float = 60) -> dict:
        """Poll until until(job) holds."""

        def ready() -> dict | None:
            job = self.job(job_id)
            return job if until(job) else None

        def why() -> str:
            logs = "\n".join(w.log_tail() for w in self.workers)
            return f"job {job_id}: {self.job(job_id)}\n{logs}"

        return wait_until(ready, timeout, why, interval=0.1)

    def stop(self) -> None:
        """Stop every worker and the app's engine."""
        for worker in self.workers:
            worker.stop()
        self.app.extensions["trainq.engine"].dispose()


@pytest.fixture
def threads_worker(
    databases: DatabaseFactory, broker_url: str, tmp_path: Path
) -> Iterator[ThreadsWorker]:
    """A threads-pool worker with a 3 s hard limit and the simulated-CUDA-error hook."""
    env = ThreadsWorker(databases, broker_url, tmp_path)
    try:
        yield env
    finally:
        env.stop()


def terminal(job: dict) -> bool:
    """Whether the job has ended."""
    return job["status"] in TERMINAL


def test_a_job_past_its_hard_limit_fails_and_the_worker_goes_on(threads_worker) -> None:  # type: ignore[no-untyped-def]
    worker = threads_worker.start()
    # A default-size job of 100,000 steps: minutes on this CPU, far past the 3 s limit.
    runaway = threads_worker.submit(stage="optim", iterations=100_000)
    job = threads_worker.wait(runaway, terminal, timeout=60)
    assert job["status"] == "failed", job
    assert "hard time limit" in job["error"], job
    # Its training stopped at the next flush: the thread is back in the pool for the next job.
    after = threads_worker.wait(runaway, lambda j: j["steps_done"] == job["steps_done"])
    assert 0 < after["steps_done"] < 100_000
    short = threads_worker.wait(threads_worker.submit(**SMALL), terminal, timeout=60)
    assert short["status"] == "succeeded", short
    assert short["steps_done"] == 200, short
    # (one thread: the short job ran only once the runaway's loop had ended, and it stays ended)
    assert threads_worker.job(runaway)["steps_done"] == after["steps_done"]
    assert worker.process.poll() is None


def test_a_cuda_error_is_recorded_then_ends_the_worker(threads_worker) -> None:  # type: ignore[no-untyped-def]
    worker = threads_worker.start()
    broken = threads_worker.submit(**SMALL, name="broken-gpu")
    job = threads_worker.wait(broken, terminal)
    assert job["status"] == "failed"
    assert "CUDA error: an illegal memory access" in job["error"]
    # The process ends rather than serve the queue from a corrupted GPU context ...
    assert worker.process.wait(30) == EXIT_DEVICE_BROKEN
    assert "GPU context is unusable" in worker.log_tail()
    # ... and the fresh one its supervisor starts trains the next job.
    threads_worker.start()
    fine = threads_worker.wait(threads_worker.submit(**SMALL), terminal)
    assert fine["status"] == "succeeded", fine
    assert threads_worker.job(broken)["status"] == "failed"


def test_only_errors_that_break_the_context_end_the_process(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from worker import device_errors

    exits: list[int] = []
    monkeypatch.setattr(device_errors.os, "_exit", exits.append)
    for harmless in (
        None,
        ValueError("D_in: at most 4096"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
    ):
        device_errors.exit_if_device_broken(harmless)
    assert exits == []
    device_errors.exit_if_device_broken(RuntimeError("CUDA error: device-side assert triggered"))
    assert exits == [EXIT_DEVICE_BROKEN]


def test_sigterm_hands_the_running_job_back_and_the_worker_exits(threads_worker) -> None:  # type: ignore[no-untyped-def]
    # Given a long job on the threads pool (the GPU worker's), past its first flush
    worker = threads_worker.start()
    job_id = threads_worker.submit(stage="optim", iterations=100_000, N=8, D_in=20, H=16, D_out=3)
    threads_worker.wait(job_id, lambda j: j["status"] == "running" and j["steps_done"] > 0)
    # When the worker is asked to stop
    worker.process.send_signal(signal.SIGTERM)
    # Then it exits at once, the job queued again (its attempt not counted) and its message sent
    assert worker.process.wait(30) == 0
    job = threads_worker.job(job_id)
    assert job["status"] == "queued", job
    assert job["attempts"] == 0, job
    assert f"handed jobs [{job_id}] back to the queue" in worker.log_tail(200)
    # and the next worker trains it from there to the end
    threads_worker.start()
    done = threads_worker.wait(job_id, lambda j: j["status"] in ("succeeded", "failed"), 120)
    assert done["steps_done"] > job["steps_done"], done
