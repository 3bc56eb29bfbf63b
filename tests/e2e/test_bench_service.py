"""The benchmarks' embedded service: PYTHONPATH kept, and nothing left running after SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.embedded import EmbeddedService
from tests.support.processes import ROOT

HOLD = """
import sys, time
from bench.embedded import EmbeddedService
with EmbeddedService(concurrency=1) as service:
    print(service.var_dir, flush=True)
    time.sleep(300)
"""


def with_env(name: str, value: str) -> list[int]:
    """Live processes whose environment holds name=value."""
    marker = f"{name}={value}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            stat = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] != "Z" and marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except (OSError, IndexError):
            continue
    return found


def test_the_service_adds_to_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/tmp/site")
    service = EmbeddedService()
    shutil.rmtree(service.var_dir)
    assert service.env["PYTHONPATH"] == f"{ROOT}{os.pathsep}/tmp/site"


def test_a_benchmark_stopped_by_sigterm_leaves_nothing_running() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    bench = subprocess.Popen(
        [sys.executable, "-c", HOLD], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        var_dir = bench.stdout.readline().strip()  # once trainq up answers with its workers
        assert var_dir, "the service did not start"
        assert len(with_env("TRAINQ_VAR_DIR", var_dir)) >= 4  # supervisor, api, workers, redis
        # When `timeout` ends the benchmark
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(60) == 128 + signal.SIGTERM
        # Then trainq up and every process it started are gone
        deadline = time.monotonic() + 10
        while with_env("TRAINQ_VAR_DIR", var_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert with_env("TRAINQ_VAR_DIR", var_dir) == []
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(10)
        bench.stdout.close()
