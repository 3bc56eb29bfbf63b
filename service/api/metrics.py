"""GET /metrics in Prometheus' text format; request counts and latencies by route and status.

Under gunicorn, `trainq api` sets PROMETHEUS_MULTIPROC_DIR, so each process writes its request
metrics to files there and a scrape answered by any process adds them all up
(prometheus_client's multiprocess mode); the deployment's figures come from SQL and Redis.
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from service.api.apidoc import documented
from service.ops.metrics import NAMESPACE, DeploymentCollector

bp = Blueprint("metrics", __name__)

# Declared once, registered with no registry: each scrape builds its own (see metrics()).
REQUESTS = Counter(
    f"{NAMESPACE}_http_requests",
    "API requests answered, by route, method and status",
    ["route", "method", "status"],
    registry=None,
)
LATENCY = Histogram(
    f"{NAMESPACE}_http_request_duration_seconds",
    "Time to answer an API request, by route, method and status",
    ["route", "method", "status"],
    registry=None,
)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None:
        # The rule, not the path, so ids do not make a series each; unmatched URLs share one.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        labels = (route, request.method, str(response.status_code))
        REQUESTS.labels(*labels).inc()
        LATENCY.labels(*labels).observe(time.perf_counter() - started)
    return response


def init_app(app: Flask) -> None:
    """Time every request from the first before_request hook to the last after_request."""
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_blueprint(bp)


def registry() -> CollectorRegistry:
    """This scrape's registry: every process's request metrics, and the deployment's."""
    scrape = CollectorRegistry(auto_describe=True)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(scrape)
    else:
        scrape.register(REQUESTS)
        scrape.register(LATENCY)
    scrape.register(
        DeploymentCollector(current_app.extensions["trainq.sessions"], current_app.config["TRAINQ"])
    )
    return scrape


@bp.get("/metrics")
@documented(
    "Prometheus metrics: jobs, queues, workers, reconciler, API requests",
    tag="meta",
    responses={200: {"text/plain": None}},
    errors=(),
    scope="read",
)
def metrics() -> Response:
    """The Prometheus text exposition of this deployment."""
    return Response(generate_latest(registry()), headers={"Content-Type": CONTENT_TYPE_LATEST})
