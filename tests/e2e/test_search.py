"""Search sweeps end to end: real workers, and controllers that ask the trials (one killed)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from service.broker import make_celery
from service.cli import main
from service.config import Config
from service.models import Job, JobStatus, Sweep
from service.sweeps.controller import LiveCapacity
from tests.conftest import Stack
from tests.e2e.test_sweeps import SMALL, wait_for_sweep
from tests.support.processes import ROOT
from tests.support.waiting import wait_until

# sgd at a high lr may diverge: an outcome, told to the sampler as the worst.
ENDED = {JobStatus.SUCCEEDED, JobStatus.DIVERGED}


class Controllers:
    """`trainq controller` processes on one stack, each named, started and killed at will."""

    def __init__(self, stack: Stack, log_dir: Path) -> None:
        self.stack, self.log_dir = stack, log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, seconds: float = 0.2) -> None:
        env = dict(
            os.environ,
            TRAINQ_DATABASE_URL=self.stack.database_url,
            TRAINQ_BROKER_URL=self.stack.broker_url,
            TRAINQ_CONTROLLER_SECONDS=str(seconds),
            TRAINQ_CONTROLLER_LEASE_SECONDS="2",
        )
        with open(self.log_dir / f"controller-{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "controller", "--name", name],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.kill(name)


@pytest.fixture
def controllers(stack: Stack, tmp_path: Path) -> Iterator[Controllers]:
    running = Controllers(stack, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


def search_sweep(stack: Stack, n: int, method: str = "tpe") -> int:
    body = {
        "name": f"search-{method}",
        "base": {**SMALL, "D_out": 4, "iterations": 200},
        "search": {
            "method": method,
            "n": n,
            "parallel": 2,
            "space": {"lr": {"log_uniform": [1e-4, 1e-1]}, "optimizer": ["sgd", "adam"]},
        },
    }
    return stack.submit_sweep(body)


def sweep_jobs(stack: Stack, sweep_id: int) -> list[Job]:
    with stack.sessions() as session:
        query = sa.select(Job).where(Job.sweep_id == sweep_id).order_by(Job.id)
        return list(session.scalars(query))


def test_live_capacity_counts_the_pool_slots_of_the_workers_on_a_queue(stack: Stack) -> None:
    app = make_celery(Config(database_url=stack.database_url, broker_url=stack.broker_url))
    capacity = LiveCapacity(app, fallback=7)
    # The stack's one worker serves cpu with two pool processes; nobody serves gpu.
    assert (capacity("cpu"), capacity("gpu")) == (2, 7)


def test_a_search_sweep_finishes_with_its_n_trials(stack: Stack, controllers: Controllers) -> None:
    # Given a TPE search of 6 trials, 2 at a time, and a controller
    sweep_id = search_sweep(stack, 6)
    controllers.start("only")
    # When the controller and workers drive it
    sweep = wait_for_sweep(stack, sweep_id)
    # Then it ended with exactly its 6 trials, each trained once
    jobs = sweep_jobs(stack, sweep_id)
    assert sweep["job_count"] == len(jobs) == 6, sweep
    assert all(job.status in ENDED and job.attempts == 1 for job in jobs), jobs
    assert len({(job.lr, job.optimizer) for job in jobs}) == 6


def test_a_controller_asks_as_soon_as_a_worker_announces_that_a_trial_ended(
    stack: Stack, controllers: Controllers
) -> None:
    # Given a controller whose own pass comes only every 10 minutes
    sweep_id = search_sweep(stack, 6)
    controllers.start("woken", seconds=600)
    # When the workers end its trials, two at a time
    sweep = wait_for_sweep(stack, sweep_id, timeout=120)
    # Then each end woke it to ask the next (its first pass asked only the first two)
    jobs = sweep_jobs(stack, sweep_id)
    assert sweep["job_count"] == len(jobs) == 6, sweep
    assert all(job.status in ENDED for job in jobs), jobs


def test_a_killed_controller_is_replaced_and_no_trial_is_lost_or_doubled(
    stack: Stack, controllers: Controllers
) -> None:
    # Given two controllers on one search sweep of 8 trials
    sweep_id = search_sweep(stack, 8)
    controllers.start("a")
    controllers.start("b")

    def holder() -> str | None:
        with stack.sessions() as session:
            sweep = session.get_one(Sweep, sweep_id)
            return sweep.controller if sweep.job_count >= 3 else None

    # When the one that drives it is killed mid-sweep
    killed = wait_until(holder, 120, "three trials asked")
    controllers.kill(killed)
    # Then the other takes the sweep over once the lease runs out, and it ends with 8 trials
    sweep = wait_for_sweep(stack, sweep_id)
    jobs = sweep_jobs(stack, sweep_id)
    with stack.sessions() as session:
        row = session.get_one(Sweep, sweep_id)
        assert (row.job_count, row.trials_asked, row.trials_wanted) == (8, 8, 8)
        assert row.controller == ({"a", "b"} - {killed}).pop()
    assert sweep["job_count"] == len(jobs) == 8
    assert all(job.status in ENDED and job.attempts == 1 for job in jobs), jobs
    assert len({(job.lr, job.optimizer) for job in jobs}) == 8


def test_cli_follows_a_search_sweep_and_prints_the_best_trial(
    live_url: str, controllers: Controllers, tmp_path: Path
) -> None:
    # Given a search sweep file, with asha too, and a controller
    path = tmp_path / "search.yaml"
    path.write_text(
        "name: cli-search\n"
        "base: {stage: optim, init: normal, iterations: 60, N: 8, D_in: 16, H: 8, D_out: 2}\n"
        "search:\n"
        "  method: tpe\n"
        "  n: 4\n"
        "  parallel: 2\n"
        "  space: {lr: {log_uniform: [1e-3, 1e-1]}, optimizer: [adam, rmsprop]}\n"
        "early_stop: {rule: asha, grace: 4, reduction: 2}\n"
        "seed: 3\n"
    )
    controllers.start("cli")
    # When `trainq sweep` follows it
    result = CliRunner().invoke(
        main, ["sweep", str(path), "--poll", "0.2"], env={"TRAINQ_URL": live_url}
    )
    # Then it saw every trial end and names the best
    assert result.exit_code == 0, result.output
    assert "0 job(s), varying lr, optimizer; sweep seed 3" in result.output
    assert "'cli-search': 4/4 finished" in result.output
    assert "best trial: job " in result.output
