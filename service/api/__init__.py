"""The Flask app factory: JSON API under /api/v1, health at the root."""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter

from service.config import Config


class RowIdConverter(IntegerConverter):
    """`<int:...>` in our routes: a row id, so ids past the database's integer range are 404s."""

    def __init__(self, map, fixed_digits=0, min=None, max=2**31 - 1, signed=False):  # type: ignore[no-untyped-def]  # noqa: A002
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the trainq API app; `test_config` overrides settings (tests pass their own URLs)."""
    app = Flask(__name__)
    overrides = dict(test_config or {})
    config = overrides.pop("TRAINQ_CONFIG", None) or Config.from_env()
    app.config.from_mapping(
        TRAINQ=config,
        MAX_CONTENT_LENGTH=config.max_request_bytes,
        JSON_SORT_KEYS=False,
    )
    app.config.update(overrides)
    # Before any rule is added: every <int:id> in a route becomes a bounded row id.
    app.url_map.converters["int"] = RowIdConverter

    from service.api import errors, extensions, health, jobs, openapi, pages, results, sweeps

    extensions.init_app(app)
    errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(jobs.bp, url_prefix="/api/v1")
    app.register_blueprint(sweeps.bp, url_prefix="/api/v1")
    app.register_blueprint(results.bp, url_prefix="/api/v1")
    return app
