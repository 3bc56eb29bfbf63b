"""One configuration, read from TRAINQ_* environment variables, shared by API, worker and CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _var_dir() -> Path:
    return Path(os.environ.get("TRAINQ_VAR_DIR", "var")).resolve()


def _from_env(cls: type) -> dict[str, Any]:
    """Each int, float or str setting of a dataclass from TRAINQ_<NAME>, else its default."""
    values: dict[str, Any] = {}
    for setting in fields(cls):
        default = setting.default
        if isinstance(default, int | float | str):
            raw = os.environ.get(f"TRAINQ_{setting.name.upper()}")
            if raw in (None, ""):
                values[setting.name] = default
            elif isinstance(default, bool):  # bool("0") is True: read the word instead
                values[setting.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[setting.name] = type(default)(raw)
    return values


@dataclass(frozen=True)
class Limits:
    """The caps one deployment puts on a job, each read from TRAINQ_<NAME>."""

    max_iterations: int = 100_000
    max_dim: int = 100_000
    # Every tensor of one job together (x, y, w1, w2, activations and their gradients).
    max_elements: int = 50_000_000
    # Iterations x multiply-adds per iteration: ~7,700 default jobs' worth of compute.
    max_work: float = 5e13


@dataclass(frozen=True)
class Config:
    """Settings of one trainq deployment; each plain one is read from TRAINQ_<NAME>."""

    database_url: str
    broker_url: str
    api_tokens: tuple[str, ...] = ()
    torch_threads: int = 1
    default_queue: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    max_sweep_jobs: int = 10_000
    max_request_bytes: int = 1_000_000
    # Submissions (POST /jobs and /sweeps together) per token, or per address without tokens,
    # in Flask-Limiter's notation ("6000/minute", "100/second"); "off" disables it.
    submit_rate_limit: str = "6000/minute"
    # Queued-plus-running jobs one owner may have (0: no cap); a sweep counts all its jobs.
    max_active_jobs_per_owner: int = 100_000
    # Rows per write: a 500-step job in 2 transactions, not 8; flush_seconds keeps it live.
    flush_every: int = 256
    flush_seconds: float = 0.5
    # Short, since the heartbeat (not the training loop) keeps it: a dead worker's job is free
    # again within a lease, and the reconciler's next pass sends it to another worker.
    lease_seconds: float = 12.0
    # A worker's heartbeat renews its jobs' leases this often, whatever its training does.
    heartbeat_seconds: float = 2.0
    # A worker's transactions take milliseconds. PostgreSQL ends one left idle this long, so a
    # frozen worker (SIGSTOP, a paused VM) cannot keep its job's row locked, out of the
    # reconciler's reach (it skips locked rows), long after its lease ran out.
    worker_idle_transaction_seconds: float = 30.0
    max_attempts: int = 3
    reconcile_seconds: float = 2.0
    # A search sweep's controller asks for trials this often, under a lease on the sweep.
    controller_seconds: float = 1.0
    controller_lease_seconds: float = 12.0
    # Trials a search sweep keeps in flight when neither its request nor a live worker says.
    search_parallel: int = 2
    # A queued job whose message is in no queue this long after sending is sent again.
    lost_message_seconds: float = 300.0
    # Checkpoints of long jobs: every so many steps (0: off) or seconds, whichever comes first.
    checkpoint_every: int = 0
    checkpoint_seconds: float = 60.0
    # The most jobs one fused stack holds; the device's memory or cache may make it fewer.
    max_stack: int = 1024
    # Whether rows that jobs leave in a fused stack take their sweep's queued jobs (0: off).
    refill_stacks: bool = True
    # Both below the broker's visibility timeout (12 h), so no message is redelivered mid-job.
    job_soft_limit_seconds: float = 10 * 3600.0
    job_hard_limit_seconds: float = 11 * 3600.0
    # How long a worker keeps retrying a database that went away before failing the job.
    db_retry_seconds: float = 120.0
    # Celery task events for Flower: 1 on (workers and the API send them), 0 off.
    task_events: int = 1
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
            "limits": Limits(**_from_env(Limits)),
            "var_dir": var_dir,
            **_from_env(cls),
        }
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update(overrides)
        return cls(**values)
