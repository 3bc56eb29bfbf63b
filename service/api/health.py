"""GET /health: the database, the broker and the live workers per queue; submits' warnings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify

from service.api.apidoc import documented
from service.api.extensions import celery_client, config, db_session
from service.api.schemas import Health
from service.jobs import queue_for
from service.models import Job, JobStatus
from service.ops.probe import broker_failure, database_failure
from service.ops.worker_liveness import WorkerLiveness, no_worker_warning, unserved_queues

bp = Blueprint("health", __name__)


def _error_name(error: Exception | None) -> str | None:
    # Only the kind of failure: anyone may read /health, and a driver message can name hosts.
    return None if error is None else type(error).__name__


def liveness() -> WorkerLiveness:
    """This app's view of which workers are live (one per app, shared by its requests)."""
    extensions = current_app.extensions
    if "trainq.liveness" not in extensions:
        extensions["trainq.liveness"] = WorkerLiveness(celery_client())
    return extensions["trainq.liveness"]


def queue_of(fields: Mapping[str, Any]) -> str:
    """The queue jobs with these fields go to (`device`, else the deployment's default)."""
    return queue_for(fields.get("device", "auto"), config().default_queue)


def with_warnings(body: dict[str, Any], queues: Iterable[str]) -> dict[str, Any]:
    """A submission's answer: `body`, with `warnings` when a queue it went to has no live worker."""
    workers = liveness().workers()
    warnings = [no_worker_warning(q) for q in unserved_queues(workers or {}, queues)]
    # The broker did not answer (workers is None): the send failed too, the reconciler sends.
    return {**body, "warnings": warnings} if warnings and workers is not None else body


def _routed_queues() -> list[str]:
    """The queues this deployment sends to now: its default one and any with jobs waiting."""
    waiting = db_session().scalars(
        sa.select(Job.queue).where(Job.status == JobStatus.QUEUED).distinct()
    )
    return [config().default_queue, *sorted(waiting)]


@bp.get("/health")
@documented(
    "200 when the database and broker answer: status ok, or degraded (with `warnings`) while a"
    " queue the deployment routes to (its default one, or one with jobs waiting) has no live"
    " worker; 503 when the database or broker does not answer",
    tag="health",
    responses={200: Health, 503: Health},
    errors=(),
)
def health() -> tuple[Response, int]:
    """Whether the service can take and run jobs."""
    database_error = _error_name(database_failure(current_app.extensions["trainq.engine"]))
    broker_error = _error_name(broker_failure(celery_client(), timeout=2))
    database, broker = database_error is None, broker_error is None
    workers = (liveness().workers(fresh=True) or {}) if broker else {}
    warnings = []
    if database and broker:
        warnings = [no_worker_warning(q) for q in unserved_queues(workers, _routed_queues())]
    status = ("degraded" if warnings else "ok") if database and broker else "unavailable"
    body = {
        "status": status,
        "database": {"ok": database, "error": database_error},
        "broker": {"ok": broker, "error": broker_error},
        "workers": workers,
        "warnings": warnings,
    }
    return jsonify(body), 200 if database and broker else 503
