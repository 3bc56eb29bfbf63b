"""The fault suite's world: its own Redis, a fresh database, workers to kill, a reconciler."""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from service.broker import make_celery
from service.config import Config
from service.db import make_engine, make_session_factory
from service.models import Job
from service.ops.reconcile import reconcile_once
from service.ops.redis_server import RedisServer, free_port
from tests.conftest import TERMINAL, make_test_app
from tests.faults.checker import Expectation, Report, check
from tests.support.processes import WorkerProcess
from worker.training import TrainSpec, train_to_list
from worker.training.fused import train_fused_to_lists

# Figures of the whole run, printed at the end (and written to $TRAINQ_FAULT_FIGURES if set).
FIGURES = {
    "faults_injected": 0,
    "jobs_checked": 0,
    "lost": 0,
    "duplicated": 0,
    "unexpected": 0,
    "bad_requests": 0,
}

# Short leases and a fast reconciler so that recovery happens within a test's bounded waits.
WORKER_ENV = {
    "TRAINQ_TESTING": "1",
    "TRAINQ_TEST_CRASH_ON_JOB_NAME": "poison",
    "TRAINQ_LEASE_SECONDS": "5",
    "TRAINQ_HEARTBEAT_SECONDS": "1",
    "TRAINQ_FLUSH_SECONDS": "0.2",
    "TRAINQ_MAX_ATTEMPTS": "3",
    "TRAINQ_CHECKPOINT_EVERY": "1000",
    "TRAINQ_DB_RETRY_SECONDS": "60",
}
SMALL = {"stage": "tensors", "N": 8, "D_in": 16, "H": 8, "D_out": 4, "lr": 1e-4}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report the suite's figures."""
    if FIGURES["jobs_checked"] or FIGURES["bad_requests"]:
        terminalreporter.write_sep("-", "fault suite figures")
        terminalreporter.write_line(json.dumps(FIGURES))
        target = os.environ.get("TRAINQ_FAULT_FIGURES")
        if target:
            Path(target).write_text(json.dumps(FIGURES, indent=2) + "\n")


def record_recovery(fault: str, seconds: float) -> None:
    """Add one recovery time (fault to running again) to the suite's figures, per fault."""
    times = FIGURES.setdefault("recovery_by_fault_s", {}).setdefault(fault, {"each": []})
    times["each"].append(round(seconds, 1))
    times["median"] = round(statistics.median(times["each"]), 1)
    times["worst"] = max(times["each"])


class FaultEnv:
    """One backend's service with its own Redis: submit, break things, wait, check."""

    def __init__(self, database_url: str, redis: RedisServer, tmp: Path) -> None:
        self.database_url = database_url
        self.redis = redis
        self.tmp = tmp
        self.config = Config.from_env(
            database_url=database_url,
            broker_url=redis.url,
            lease_seconds=5.0,
            max_attempts=3,
            lost_message_seconds=2.0,
        )
        self.app = make_test_app(database_url, redis.url)
        self.client: FlaskClient = self.app.test_client()
        self.engine = make_engine(database_url)
        self.sessions: so.sessionmaker[so.Session] = make_session_factory(self.engine)
        self.accepted: dict[int, Expectation] = {}
        self.workers: list[WorkerProcess] = []
        self._stop_reconciler = threading.Event()
        self._reconciler: threading.Thread | None = None
        self.reconciled: list[dict[str, int]] = []
        self.passes: list[float] = []  # when each finished reconciler pass began (monotonic)

    def worker(self, concurrency: int = 2, **env: str) -> WorkerProcess:
        """Start a worker with the suite's settings (plus env) and wait until it is ready."""
        name = f"w{len(self.workers)}"
        process = WorkerProcess(
            self.database_url,
            self.redis.url,
            self.tmp,
            name=name,
            concurrency=concurrency,
            extra_env={**WORKER_ENV, **env},
        )
        self.workers.append(process)
        return process.start(timeout=90)

    def start_reconciler(self, interval: float = 0.3) -> None:
        """Run the real reconciler in a thread, as `trainq reconcile` does in a process."""
        factory = make_session_factory(self.engine, writer=True)
        celery = make_celery(self.config)

        def loop() -> None:
            while not self._stop_reconciler.wait(interval):
                began = time.monotonic()
                try:
                    counts = reconcile_once(factory, celery, self.config, grace_seconds=0.5)
                except Exception:  # Redis or the database is down on purpose: next pass
                    continue
                self.passes.append(began)
                if any(counts.values()):
                    self.reconciled.append(counts)

        self._reconciler = threading.Thread(target=loop, daemon=True)
        self._reconciler.start()

    def submit(self, expect: Expectation | None = None, **fields: Any) -> int:
        """POST a job; it is accepted (201) and remembered with what it must end as."""
        body = {**SMALL, "seed": len(self.accepted) + 1, **fields}
        response = self.client.post("/api/v1/jobs", json=body)
        assert response.status_code == 201, response.get_json()
        job = response.get_json()
        self.accepted[job["id"]] = expect or Expectation()
        return job["id"]

    def submit_stack(
        self,
        grid: dict[str, list[Any]],
        expect: Callable[[str | None], Expectation] | None = None,
        early_stop: dict[str, Any] | None = None,
        **base: Any,
    ) -> list[int]:
        """POST a fused sweep over grid; its job ids, in order, each expected as `expect(name)`."""
        body = {"name": "stack", "base": {**SMALL, "seed": 7, **base}, "grid": grid, "fused": True}
        if early_stop is not None:
            body["early_stop"] = early_stop
        response = self.client.post("/api/v1/sweeps", json=body)
        assert response.status_code == 201, response.get_json()
        sweep_id = response.get_json()["id"]
        with self.sessions() as session:
            rows = session.execute(
                sa.select(Job.id, Job.name).where(Job.sweep_id == sweep_id).order_by(Job.id)
            ).all()
        for job_id, name in rows:
            self.accepted[job_id] = expect(name) if expect else Expectation(fused=True)
        return [job_id for job_id, _ in rows]

    def job(self, job_id: int) -> dict[str, Any]:
        """The job as the API shows it."""
        return self.client.get(f"/api/v1/jobs/{job_id}").get_json()

    def wait(self, job_id: int, until: Callable[[dict], bool], timeout: float = 60) -> dict:
        """Poll the job until `until(job)` holds, or fail with the workers' logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if until(job):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} not there in {timeout} s: {job}\n{self.logs()}")

    def wait_all(self, timeout: float = 120) -> None:
        """Wait until every accepted job is terminal."""
        for job_id in self.accepted:
            self.wait(job_id, lambda job: job["status"] in TERMINAL, timeout)

    def fault(self, count: int = 1) -> None:
        """Count an injected fault."""
        FIGURES["faults_injected"] += count

    def check(self) -> Report:
        """Run the checker and assert lost/duplicated/unexpected are 0/0/0."""
        # Uninterrupted runs computed only now: doing it at submission would stall the test.
        for job_id, expected in self.accepted.items():
            job = self.job(job_id)
            if expected.losses is None and job.get("status") in ("succeeded", "pruned"):
                expected.losses = reference_losses(job, fused=expected.fused)
        report = check(self.sessions, self.accepted)
        FIGURES["jobs_checked"] += report.jobs_checked
        for name, count in zip(("lost", "duplicated", "unexpected"), report.counts, strict=True):
            FIGURES[name] += count
        assert report.counts == (0, 0, 0), (report, self.logs())
        return report

    def logs(self) -> str:
        """The end of every worker's log."""
        return "\n".join(f"--- {w.name}\n{w.log_tail(60)}" for w in self.workers)

    def close(self) -> None:
        """Stop the reconciler and the workers, release connections."""
        self._stop_reconciler.set()
        if self._reconciler is not None:
            self._reconciler.join(10)
        for process in self.workers:
            process.stop()
        self.engine.dispose()
        self.app.extensions["trainq.engine"].dispose()


_REFERENCES: dict[tuple[str, bool], list[float]] = {}


def reference_losses(job: dict[str, Any], *, fused: bool = False) -> list[float]:
    """The uninterrupted run of a job's fields on the CPU (what its stored history must equal).

    A fused job's is its fused run, which is the same in a stack of any size (each row's bmm
    is its own product), so a stack of one stands for the stack it trained in.
    """
    spec = TrainSpec.from_fields(job)
    key = (repr(spec), fused)
    if key not in _REFERENCES:
        run = train_fused_to_lists([spec])[0] if fused else train_to_list(spec)
        _REFERENCES[key] = run.losses
    return _REFERENCES[key]


@pytest.fixture
def make_env(database_url: str, tmp_path: Path) -> Iterator[Callable[..., FaultEnv]]:
    """Build the fault world on this test's database; `appendonly` picks Redis persistence."""
    made: list[tuple[FaultEnv, RedisServer]] = []

    def build(appendonly: bool = True) -> FaultEnv:
        redis = RedisServer(free_port(), tmp_path / "redis", appendonly=appendonly).start()
        env = FaultEnv(database_url, redis, tmp_path / "logs")
        made.append((env, redis))
        return env

    yield build
    for env, redis in made:
        env.close()
        redis.stop()


@pytest.fixture
def env(make_env: Callable[..., FaultEnv]) -> FaultEnv:
    """The fault world with an append-only Redis."""
    return make_env()
