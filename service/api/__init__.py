"""The Flask app factory: JSON API under /api/v1, health at the root."""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

from service.config import Config

# Ids are 32-bit integer keys: a larger one in a URL matches no route (404), instead of
# reaching PostgreSQL and failing there as out of range.
MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """`<int:...>` in trainq's routes: a non-negative id that fits its column."""

    def __init__(
        self,
        url_map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = MAX_ID,
        signed: bool = False,
    ) -> None:
        super().__init__(url_map, fixed_digits, min, max, signed)


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
    # Before any rule is added: every <int:id> in a route becomes a bounded id.
    app.url_map.converters["int"] = IdConverter

    from service.api import (
        compare,
        errors,
        exports,
        extensions,
        headers,
        health,
        idempotency,
        jobs,
        limits,
        metrics,
        openapi,
        origin,
        pages,
        sign_in,
        sweep_analysis,
        sweeps,
    )

    # First, so a request is timed from before the token check to after the last header.
    metrics.init_app(app)
    # Before the token check: a cross-site browser request is refused whatever it carries.
    origin.init_app(app)
    extensions.init_app(app)
    errors.init_app(app)
    idempotency.init_app(app)
    headers.init_app(app)
    # After the token check, whose token names the client a limit counts.
    limits.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(sign_in.bp)
    app.register_blueprint(jobs.bp, url_prefix="/api/v1")
    app.register_blueprint(sweeps.bp, url_prefix="/api/v1")
    app.register_blueprint(sweep_analysis.bp, url_prefix="/api/v1")
    app.register_blueprint(compare.bp, url_prefix="/api/v1")
    app.register_blueprint(exports.bp, url_prefix="/api/v1")
    return app
