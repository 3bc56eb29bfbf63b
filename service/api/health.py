"""GET /health: 200 when the database and broker answer, with live workers per queue."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify

from service.api.apidoc import documented
from service.api.extensions import celery_client
from service.api.schemas import Health

bp = Blueprint("health", __name__)


def _database_ok() -> tuple[bool, str | None]:
    try:
        with current_app.extensions["trainq.engine"].connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True, None
    except Exception as error:
        return False, type(error).__name__


def _broker_ok() -> tuple[bool, str | None]:
    try:
        with celery_client().connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            connection.default_channel.client.ping()
        return True, None
    except Exception as error:
        return False, type(error).__name__


def _workers_per_queue() -> dict[str, list[str]]:
    replies = celery_client().control.inspect(timeout=0.5).active_queues() or {}
    per_queue: dict[str, list[str]] = {"cpu": [], "gpu": []}
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
    database, database_error = _database_ok()
    broker, broker_error = _broker_ok()
    workers = _workers_per_queue() if broker else {}
    body = {
        "status": "ok" if database and broker else "unavailable",
        "database": {"ok": database, "error": database_error},
        "broker": {"ok": broker, "error": broker_error},
        "workers": workers,
    }
    return jsonify(body), 200 if database and broker else 503
