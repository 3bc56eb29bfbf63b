"""gunicorn hooks `trainq api` loads (`-c python:service.ops.gunicorn_hooks`)."""

from __future__ import annotations

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    """A dead process's live gauges leave the sums; its counters stay counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
