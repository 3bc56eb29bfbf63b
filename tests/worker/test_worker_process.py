"""The worker process itself: GPU queue refused without CUDA, torch threads per process."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.support.processes import ROOT


def test_gpu_worker_refuses_to_start_without_cuda(broker_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here, so the GPU worker rightly starts")
    env = {
        "PATH": "/usr/bin:/bin",
        "TRAINQ_BROKER_URL": broker_url,
        "TRAINQ_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "worker", "--queues", "gpu", "--hostname", "g@%h"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "CUDA is not available" in result.stdout + result.stderr


def test_worker_process_uses_configured_torch_threads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    probe = (
        "from worker.state import worker_config; import torch; worker_config();"
        " print(torch.get_num_threads())"
    )
    for threads in ("1", "2"):
        env = {
            "PATH": "/usr/bin:/bin",
            "TRAINQ_TORCH_THREADS": threads,
            "TRAINQ_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        }
        out = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() == threads, out.stderr


def test_a_hand_started_gpu_worker_refuses_the_prefork_pool(broker_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {
        "PATH": "/usr/bin:/bin",
        "TRAINQ_BROKER_URL": broker_url,
        "TRAINQ_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "gpu"]
    result = subprocess.run(
        [*argv, "--pool", "prefork", "--concurrency", "1", "--hostname", "g@%h"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to serve the gpu queue with the prefork pool" in result.stdout + result.stderr
