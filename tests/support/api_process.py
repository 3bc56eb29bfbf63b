"""The API under real gunicorn, as `trainq api` serves it, for tests of what only it shows."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import requests

from service.ops.redis_server import free_port
from tests.support.processes import LoggedProcess


class ApiProcess(LoggedProcess):
    """`gunicorn service.api:create_app()` with N worker processes on a loopback port."""

    what = "API server"

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

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/openapi.json", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or still importing the app
            return False
