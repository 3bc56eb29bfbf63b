"""GET /health: 200 when the database and broker answer, with live workers per queue."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from service.api.apidoc import documented
from service.api.extensions import celery_client
from service.api.schemas import Health
from service.choices import QUEUES
from service.ops.probe import broker_failure, database_failure

bp = Blueprint("health", __name__)


def _error_name(error: Exception | None) -> str | None:
    # Only the kind of failure: anyone may read /health, and a driver message can name hosts.
    return None if error is None else type(error).__name__


def _workers_per_queue() -> dict[str, list[str]]:
    replies = celery_client().control.inspect(timeout=0.5).active_queues() or {}
    per_queue: dict[str, list[str]] = {queue: [] for queue in QUEUES}
    for worker, queues in sorted(replies.items()):
        for queue in queues:
            per_queue.setdefault(queue["name"], []).append(worker)
    return per_queue


@bp.get("/health")
@documented(
    "200 when the database and broker answer, with live workers per queue; 503 otherwise",
    tag="health",
    responses={200: Health, 503: Health},
    errors=(),
)
def health() -> tuple[Response, int]:
    """Whether the service can take and run jobs."""
    database_error = _error_name(database_failure(current_app.extensions["trainq.engine"]))
    broker_error = _error_name(broker_failure(celery_client(), timeout=2))
    database, broker = database_error is None, broker_error is None
    workers = _workers_per_queue() if broker else {}
    body = {
        "status": "ok" if database and broker else "unavailable",
        "database": {"ok": database, "error": database_error},
        "broker": {"ok": broker, "error": broker_error},
        "workers": workers,
    }
    return jsonify(body), 200 if database and broker else 503
