"""Every error as JSON: {"error": {"code", "message", "field"}}."""

from __future__ import annotations

import logging

import sqlalchemy.exc
from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from service.api.extensions import ApiError
from service.jobspec import SpecError

log = logging.getLogger(__name__)


def error_response(
    status: int, code: str, message: str, field: str | None = None, **extra: object
) -> tuple[Response, int]:
    """The JSON body and status of one error."""
    body = {"error": {"code": code, "message": message, "field": field, **extra}}
    return jsonify(body), status


def wants_html() -> bool:
    """A browser asking for a page outside the API (an unknown URL) gets an HTML error."""
    if request.path.startswith("/api/"):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def init_app(app: Flask) -> None:
    """Register the JSON error handlers."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> tuple[Response, int]:
        return error_response(error.status, error.code, error.message, error.field, **error.extra)

    @app.errorhandler(SpecError)
    def _spec_error(error: SpecError) -> tuple[Response, int]:
        return error_response(
            422, "invalid_field", error.message, error.field, details=error.details
        )

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[str | Response, int]:
        status = error.code or 500
        if wants_html():
            return render_template("error.html", error=error), status
        code = {413: "too_large", 404: "not_found", 405: "method_not_allowed"}.get(
            status, (error.name or "error").lower().replace(" ", "_")
        )
        response, _ = error_response(status, code, error.description or error.name)
        # The error's own headers (a 405's Allow), but not its HTML content type.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(sqlalchemy.exc.OperationalError)
    def _database_down(error: Exception) -> tuple[Response, int]:
        log.warning("database unavailable: %s", error)
        return error_response(503, "database_unavailable", "the database is not answering")
