"""The API under real gunicorn, as `trainq api` serves it, for tests of what only it shows."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from service.ops.redis_server import free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class ApiProcess:
    """`gunicorn service.api:create_app()` with N worker processes on a loopback port."""

    def __init__(
        self,
        database_url: str,
        broker_url: str,
        log_dir: Path,
        *,
        workers: int = 2,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_dir) / "api.log"
        self.env = {
            **os.environ,
            "TRAINQ_DATABASE_URL": database_url,
            "TRAINQ_BROKER_URL": broker_url,
            **(extra_env or {}),
        }
        self.argv = [
            sys.executable, "-m", "service.cli", "api",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/openapi.json", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or still importing the app
            return False

    def start(self, timeout: float = 60) -> ApiProcess:
        """Start gunicorn and wait until it answers."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(self._answers, timeout, self.log_tail, interval=0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "<no log>"

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (gunicorn's graceful stop), then SIGKILL the group."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
