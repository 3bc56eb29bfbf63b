"""Healthy is not ready: with its only worker frozen (SIGSTOP), /health is degraded, a submission
warns and `trainq submit --wait` says why it waits; live again, all of it clears."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from service.ops.redis_server import RedisServer
from tests.conftest import DatabaseFactory, Stack, running_stack
from tests.support.live_server import serving
from tests.support.processes import ROOT
from tests.support.waiting import wait_until

SMALL = {"stage": "optim", "iterations": 20, "N": 8, "D_in": 16, "H": 8, "D_out": 4}


@pytest.fixture(scope="module")
def stack(
    databases: DatabaseFactory,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """One worker of its own (a Redis database no other stack uses), to freeze."""
    with running_stack("sqlite", databases, redis_server, tmp_path_factory, 9) as running:
        yield running


def status(stack: Stack) -> str:
    return stack.client.get("/health").get_json()["status"]


def test_a_live_worker_is_ok_and_a_frozen_one_is_degraded(stack: Stack) -> None:
    # Given the worker answering: ok, and a submission has nothing to warn about
    wait_until(lambda: status(stack) == "ok", 30, "a live worker")
    assert "warnings" not in stack.submit(**SMALL)
    (worker,) = stack.workers
    assert worker.process is not None
    # When its main process is frozen
    os.kill(worker.process.pid, signal.SIGSTOP)
    try:
        # Then /health says degraded, naming the queue, and a submission warns
        body = wait_until(
            lambda: (b := stack.client.get("/health").get_json())["status"] == "degraded" and b,
            30,
            "degraded",
        )
        assert body["workers"]["cpu"] == []
        assert body["warnings"][0].startswith("no live worker on queue cpu:")
        job = stack.submit(**SMALL)
        assert job["warnings"][0].startswith("no live worker on queue cpu:")
        # and the CLI, waiting on a job, says why it does not start
        with serving(stack.app) as url:
            waiting = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "submit", *as_options(SMALL), "--wait"],
                cwd=ROOT,
                env={**os.environ, "TRAINQ_URL": url},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                assert waiting.stdout is not None
                first = waiting.stdout.readline()
                assert first.startswith("job ")
                assert first.rstrip().endswith("0/20 queued, no live worker on queue cpu")
                # When the worker is live again, the job the CLI waits on runs to the end
                os.kill(worker.process.pid, signal.SIGCONT)
                out, err = waiting.communicate(timeout=120)
            finally:
                if waiting.poll() is None:
                    waiting.kill()
                    waiting.wait()
        assert waiting.returncode == 0, err
        assert "warning: no live worker on queue cpu" in err
        assert " succeeded: " in out
    finally:
        os.kill(worker.process.pid, signal.SIGCONT)
    wait_until(lambda: status(stack) == "ok", 30, "the worker live again")
    assert "warnings" not in stack.submit(**SMALL)
    stack.wait(job["id"])


def as_options(fields: dict[str, object]) -> list[str]:
    """Job fields as `trainq submit` options."""
    names = {"D_in": "--D-in", "D_out": "--D-out"}
    return [part for k, v in fields.items() for part in (names.get(k, f"--{k}"), str(v))]
