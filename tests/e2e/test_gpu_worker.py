"""The GPU path end to end: a real `trainq worker --queues gpu` (threads pool), jobs over HTTP.

Runs only where torch sees CUDA (bench/gpu_check.sh selects it with -m gpu); SQLite only, since
the GPU machines it runs on have no PostgreSQL.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import requests
import torch

from service.ops.redis_server import RedisServer
from tests.conftest import TERMINAL, DatabaseFactory, make_test_app
from tests.support.live_server import serving
from tests.support.processes import WorkerProcess
from worker.training import TrainSpec, train_to_list
from worker.training.problem import make_problem

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

DEFAULT_SIZE = {"stage": "optim", "N": 64, "D_in": 1000, "H": 100, "D_out": 10}
OPTIMIZERS = ["sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw"]
# Per optimizer, a rate that trains at the default size without diverging in 300 steps.
RATES = {"sgd": 1e-6, "momentum": 1e-7, "nesterov": 1e-7, "rmsprop": 1e-4, "adagrad": 1e-2}
RATES.update(adam=1e-4, adamw=1e-4)


@dataclass
class GpuStack:
    """A live API over HTTP with a GPU worker (threads) and a CPU worker behind it."""

    url: str
    http: requests.Session
    gpu: WorkerProcess
    cpu: WorkerProcess

    def post(self, path: str, body: dict) -> dict:
        """POST JSON, expecting 201; the body."""
        response = self.http.post(f"{self.url}/api/v1/{path}", json=body, timeout=30)
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, path: str, **params: object) -> dict:
        """GET JSON."""
        response = self.http.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: int, timeout: float = 120) -> dict:
        """Poll until the job is terminal."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(f"jobs/{job_id}")
            if job["status"] in TERMINAL:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id}: {job}\n{self.gpu.log_tail()}\n{self.cpu.log_tail()}")

    def history(self, job_id: int) -> list[float]:
        """The job's stored losses, checked to be every step in order."""
        stored = self.get(f"jobs/{job_id}/losses")
        assert stored["steps"] == list(range(len(stored["steps"])))
        return stored["losses"]


@pytest.fixture(scope="module")
def gpu_stack(
    databases: DatabaseFactory, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GpuStack]:
    """SQLite, Redis, `trainq worker --queues gpu` as deployed, one CPU worker, the API."""
    database_url = databases.create("sqlite")
    broker_url = redis_server.url.rsplit("/", 1)[0] + "/5"
    redis.Redis.from_url(broker_url).flushdb()
    logs = tmp_path_factory.mktemp("gpu-logs")
    gpu = WorkerProcess(database_url, broker_url, logs, name="gpu")
    # The command an operator runs (threads pool, one thread), not a hand-made celery line.
    gpu.argv = [sys.executable, "-m", "service.cli", "worker", "--queues", "gpu"]
    gpu.argv += ["--hostname", "gpu@%h", "--loglevel", "INFO"]
    cpu = WorkerProcess(database_url, broker_url, logs, name="cpu", concurrency=1)
    gpu.start(timeout=120)
    cpu.start(timeout=120)
    app = make_test_app(database_url, broker_url)
    try:
        with serving(app) as url, requests.Session() as http:
            yield GpuStack(url, http, gpu, cpu)
    finally:
        gpu.stop()
        cpu.stop()
        app.extensions["trainq.engine"].dispose()


def assert_same_history(expected: list[float], actual: list[float]) -> None:
    """The stage contract: rel diff <= 1e-4 over the first 100 steps, final loss within 5%."""
    assert len(actual) == len(expected)
    for step, (a, b) in enumerate(zip(expected[:100], actual[:100], strict=True)):
        assert abs(a - b) <= 1e-4 * max(abs(a), abs(b)), f"step {step}: {a} vs {b}"
    assert actual[-1] == pytest.approx(expected[-1], rel=0.05)


def test_a_cuda_job_runs_on_the_gpu_worker_and_matches_its_cpu_twin(gpu_stack: GpuStack) -> None:
    fields = {**DEFAULT_SIZE, "optimizer": "adam", "lr": 1e-4, "iterations": 300, "seed": 7}
    on_gpu = gpu_stack.post("jobs", {**fields, "device": "cuda"})
    on_cpu = gpu_stack.post("jobs", {**fields, "device": "cpu"})
    assert on_gpu["queue"] == "gpu"
    assert on_cpu["queue"] == "cpu"
    gpu_job, cpu_job = gpu_stack.wait(on_gpu["id"]), gpu_stack.wait(on_cpu["id"])
    for job in (gpu_job, cpu_job):
        assert job["status"] == "succeeded", job
        assert job["steps_done"] == 300, job
    assert gpu_job["ran_on"].startswith("cuda"), gpu_job
    assert gpu_job["worker"].startswith("gpu@")
    assert cpu_job["worker"].startswith("cpu@")
    gpu_losses, cpu_losses = gpu_stack.history(gpu_job["id"]), gpu_stack.history(cpu_job["id"])
    assert gpu_job["final_loss"] == gpu_losses[-1]
    # One seed, one problem: drawn on the CPU, then moved, so both start from the same numbers.
    spec = TrainSpec.from_fields(gpu_job)
    here, there = make_problem(spec, torch.device("cpu")), make_problem(spec, torch.device("cuda"))
    for name in ("x", "y", "w1", "w2"):
        assert torch.equal(getattr(here, name), getattr(there, name).cpu()), name
    assert gpu_losses[0] == pytest.approx(cpu_losses[0], rel=1e-5)
    assert_same_history(cpu_losses, gpu_losses)


def test_a_fused_sweep_on_cuda_keeps_every_jobs_own_history(gpu_stack: GpuStack) -> None:
    base = {**DEFAULT_SIZE, "device": "cuda", "iterations": 300}
    sweeps = []
    for optimizer in OPTIMIZERS:
        body = {"name": f"gpu-{optimizer}", "base": {**base, "optimizer": optimizer}}
        body.update(grid={"lr": [RATES[optimizer]]}, seeds=[1, 2, 3], fused=True)
        sweeps.append(gpu_stack.post("sweeps", body)["id"])
    jobs = []
    for sweep_id in sweeps:
        listed = gpu_stack.get("jobs", sweep=sweep_id, limit=100)["jobs"]
        jobs += [gpu_stack.wait(job["id"], timeout=180) for job in listed]
    assert len(jobs) == 3 * len(OPTIMIZERS)
    for job in jobs:
        assert job["status"] == "succeeded", job
        assert job["steps_done"] == 300, job
        assert job["ran_on"].startswith("cuda"), job
        assert job["worker"].startswith("gpu@"), job
        stored = gpu_stack.history(job["id"])
        # Each job of the stack as it trains alone on the GPU (and, within tolerance, the CPU).
        spec = TrainSpec.from_fields(job)
        assert_same_history(train_to_list(spec, torch.device("cuda")).losses, stored)
        assert_same_history(train_to_list(spec).losses, stored)


def test_nothing_but_the_gpu_worker_took_gpu_jobs(gpu_stack: GpuStack) -> None:
    page = gpu_stack.get("jobs", limit=1000)
    for job in page["jobs"]:
        node = "gpu@" if job["queue"] == "gpu" else "cpu@"
        assert (job["worker"] or "").startswith(node), job
