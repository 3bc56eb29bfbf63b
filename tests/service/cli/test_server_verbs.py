"""`trainq worker`: the pool each queue gets, and CPU workers kept off the GPU."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from service.cli import main
from service.cli.server_verbs import worker_command


def test_cpu_workers_never_see_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    argv, env = worker_command("cpu", None, 3, "cpu@%h", "INFO")
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert argv[argv.index("--pool") + 1] == "prefork"
    assert argv[argv.index("--concurrency") + 1] == "3"
    _, gpu_env = worker_command("gpu", None, None, None, "INFO")
    assert gpu_env["CUDA_VISIBLE_DEVICES"] == "0"


def test_the_gpu_queue_runs_threads_and_refuses_prefork() -> None:
    argv, _ = worker_command("gpu", None, None, None, "INFO")
    assert argv[argv.index("--pool") + 1] == "threads"
    assert argv[argv.index("--concurrency") + 1] == "1"
    assert "solo" in worker_command("gpu", "solo", None, None, "INFO")[0]
    with pytest.raises(click.UsageError, match="prefork"):
        worker_command("gpu", "prefork", None, None, "INFO")


def test_trainq_worker_gpu_prefork_exits_with_the_reason() -> None:
    result = CliRunner().invoke(main, ["worker", "--queues", "gpu", "--pool", "prefork"])
    assert result.exit_code == 2
    assert "gpu queue cannot use the prefork pool" in result.output
