"""Schemathesis against the live API's /openapi.json, every check on, tokens on, bounded in time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from service.tokens import digest
from tests.conftest import DatabaseFactory
from tests.support.api_process import ApiProcess

HERE = Path(__file__).resolve().parent
ADMIN = "schemathesis-admin-secret"
# The whole run, generation and requests, stays inside this budget (plus start-up).
MAX_SECONDS = int(os.environ.get("TRAINQ_SCHEMATHESIS_SECONDS", "120"))


def test_schemathesis_finds_no_failure(
    databases: DatabaseFactory, broker_url: str, tmp_path: Path
) -> None:
    # Given the API under gunicorn with scoped tokens, and a few jobs and a sweep to find
    database_url = databases.create("sqlite")
    tokens = ",".join(
        (
            f"ops:admin:sha256:{digest(ADMIN).hex()}",
            f"viewer:read:sha256:{digest('viewer-secret').hex()}",
        )
    )
    server = ApiProcess(
        database_url,
        broker_url,
        tmp_path,
        extra_env={"TRAINQ_API_TOKENS": tokens, "TRAINQ_MAX_SWEEP_JOBS": "50"},
    ).start()
    try:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        for stage in ("nn", "optim", "module"):
            job = {"stage": stage, "iterations": 5, "tags": ["fuzz"]}
            assert requests.post(f"{server.url}/api/v1/jobs", json=job, headers=auth).ok
        sweep = {"name": "s", "base": {"stage": "nn"}, "grid": {"lr": [1e-6, 1e-5]}}
        assert requests.post(f"{server.url}/api/v1/sweeps", json=sweep, headers=auth).ok
        # When Schemathesis runs every phase and every check against its document
        argv = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--mode",
            "all",
            "--max-time",
            str(MAX_SECONDS),
            "--header",
            f"Authorization: Bearer {ADMIN}",
            "--seed",
            os.environ.get("TRAINQ_SCHEMATHESIS_SEED", "1"),
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--no-color",
        ]
        run = subprocess.run(
            argv,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=MAX_SECONDS + 60,
        )
        # Then it reports no failure, having tested every operation in every phase
        report = run.stdout[-20000:] + run.stderr[-3000:]
        (tmp_path / "schemathesis.txt").write_text(run.stdout + run.stderr)
        assert run.returncode == 0, report
        summary = report.split("SUMMARY")[-1]
        assert "failures" not in summary.lower(), report
        assert "❌" not in summary, report
        # Every operation tested; fuzzing always runs (a phase the budget cut short is no fail).
        operations = sum(
            len(methods)
            for methods in requests.get(f"{server.url}/openapi.json").json()["paths"].values()
        )
        assert f"Tested: {operations}" in summary, report
        assert "✅ Fuzzing" in summary, report
    finally:
        server.stop()
