"""One configuration, read from TRAINQ_* environment variables, shared by API, worker and CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _var_dir() -> Path:
    return Path(os.environ.get("TRAINQ_VAR_DIR", "var")).resolve()


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Config:
    """Settings of one trainq deployment."""

    database_url: str
    broker_url: str
    api_tokens: tuple[str, ...] = ()
    torch_threads: int = 1
    default_queue: str = "cpu"
    max_iterations: int = 100_000
    max_dim: int = 100_000
    # Every tensor of one job together (x, y, w1, w2, activations and their gradients).
    max_elements: int = 50_000_000
    # Iterations x multiply-adds per iteration: ~7,700 default jobs' worth of compute.
    max_work: float = 5e13
    max_sweep_jobs: int = 10_000
    max_request_bytes: int = 1_000_000
    # Rows per write: a 500-step job in 2 transactions, not 8; flush_seconds keeps it live.
    flush_every: int = 256
    flush_seconds: float = 0.5
    lease_seconds: float = 120.0
    # A worker's heartbeat renews its jobs' leases this often, whatever its training does.
    heartbeat_seconds: float = 2.0
    max_attempts: int = 3
    reconcile_seconds: float = 10.0
    # A queued job whose message is in no queue this long after sending is sent again.
    lost_message_seconds: float = 300.0
    # Checkpoints of long jobs: every so many steps (0: off) or seconds, whichever comes first.
    checkpoint_every: int = 0
    checkpoint_seconds: float = 60.0
    # Both below the broker's visibility timeout (12 h), so no message is redelivered mid-job.
    job_soft_limit_seconds: float = 10 * 3600.0
    job_hard_limit_seconds: float = 11 * 3600.0
    # How long a worker keeps retrying a database that went away before failing the job.
    db_retry_seconds: float = 120.0
    var_dir: Path = field(default_factory=_var_dir)

    @classmethod
    def from_env(cls, **overrides: object) -> Config:
        """Build the configuration from the environment, then apply explicit overrides."""
        var_dir = _var_dir()
        tokens = tuple(t for t in os.environ.get("TRAINQ_API_TOKENS", "").split(",") if t.strip())
        # Any: each value has its own field's type, which no dict type can spell per key.
        values: dict[str, Any] = {
            "database_url": os.environ.get(
                "TRAINQ_DATABASE_URL", f"sqlite:///{var_dir / 'trainq.sqlite3'}"
            ),
            "broker_url": os.environ.get(
                "TRAINQ_BROKER_URL",
                f"redis://127.0.0.1:{os.environ.get('TRAINQ_REDIS_PORT', '6390')}/0",
            ),
            "api_tokens": tuple(t.strip() for t in tokens),
            "torch_threads": _int("TRAINQ_TORCH_THREADS", 1),
            "default_queue": os.environ.get("TRAINQ_DEFAULT_QUEUE", "cpu"),
            "max_iterations": _int("TRAINQ_MAX_ITERATIONS", 100_000),
            "max_dim": _int("TRAINQ_MAX_DIM", 100_000),
            "max_elements": _int("TRAINQ_MAX_ELEMENTS", 50_000_000),
            "max_work": _float("TRAINQ_MAX_WORK", 5e13),
            "max_sweep_jobs": _int("TRAINQ_MAX_SWEEP_JOBS", 10_000),
            "max_request_bytes": _int("TRAINQ_MAX_REQUEST_BYTES", 1_000_000),
            "flush_every": _int("TRAINQ_FLUSH_EVERY", 256),
            "flush_seconds": _float("TRAINQ_FLUSH_SECONDS", 0.5),
            "lease_seconds": _float("TRAINQ_LEASE_SECONDS", 120.0),
            "heartbeat_seconds": _float("TRAINQ_HEARTBEAT_SECONDS", 2.0),
            "max_attempts": _int("TRAINQ_MAX_ATTEMPTS", 3),
            "reconcile_seconds": _float("TRAINQ_RECONCILE_SECONDS", 10.0),
            "lost_message_seconds": _float("TRAINQ_LOST_MESSAGE_SECONDS", 300.0),
            "checkpoint_every": _int("TRAINQ_CHECKPOINT_EVERY", 0),
            "checkpoint_seconds": _float("TRAINQ_CHECKPOINT_SECONDS", 60.0),
            "job_soft_limit_seconds": _float("TRAINQ_JOB_SOFT_LIMIT_SECONDS", 10 * 3600.0),
            "job_hard_limit_seconds": _float("TRAINQ_JOB_HARD_LIMIT_SECONDS", 11 * 3600.0),
            "db_retry_seconds": _float("TRAINQ_DB_RETRY_SECONDS", 120.0),
            "var_dir": var_dir,
        }
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update(overrides)
        return cls(**values)
