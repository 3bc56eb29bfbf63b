"""Server verbs: the pool each queue gets, CPU workers kept off the GPU, no open public API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from service.cli import main
from service.cli.server_verbs import api, refuse_open_api, worker_command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def run_trainq(args: list[str], env: dict[str, str], timeout: float = 30) -> tuple[int, str]:
    """Run `trainq ARGS` as its own process group; one still serving after timeout is killed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"trainq {args} started serving:\n{output.decode()[-2000:]}") from None
    return process.returncode, output.decode()


@pytest.mark.parametrize("verb", ["api", "up"])
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_an_open_api_on_a_public_address_refuses_to_start(
    tmp_path: Path, verb: str, host: str
) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("TRAINQ_API_TOKENS", "TRAINQ_ALLOW_OPEN")
    }
    env["TRAINQ_VAR_DIR"] = str(tmp_path)
    # `up` would otherwise start its own Redis: a broker nobody listens on is enough here.
    env["TRAINQ_BROKER_URL"] = "redis://127.0.0.1:1/0"
    status, output = run_trainq([verb, "--host", host, "--port", str(free_port())], env)
    assert status == 2, output
    assert f"refusing to serve an open API on {host}" in output
    assert "TRAINQ_API_TOKENS is empty" in output
    assert "--allow-open" in output


def test_tokens_loopback_or_allow_open_let_the_api_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINQ_API_TOKENS", raising=False)
    refuse_open_api("127.0.0.1", allow_open=False)
    refuse_open_api("localhost", allow_open=False)
    refuse_open_api("0.0.0.0", allow_open=True)
    monkeypatch.setenv("TRAINQ_API_TOKENS", "ops:admin:sha256:" + "0" * 64)
    refuse_open_api("0.0.0.0", allow_open=False)


def test_the_env_switch_is_read_as_allow_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINQ_API_TOKENS", raising=False)
    monkeypatch.setenv("TRAINQ_ALLOW_OPEN", "1")
    context = api.make_context("api", ["--host", "0.0.0.0"])
    assert context.params["allow_open"] is True
    monkeypatch.setenv("TRAINQ_ALLOW_OPEN", "0")
    assert api.make_context("api", ["--host", "0.0.0.0"]).params["allow_open"] is False
