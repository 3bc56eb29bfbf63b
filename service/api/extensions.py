"""Per-app resources: the database engine, a session per request, the Celery client, auth."""

from __future__ import annotations

from typing import TypeVar

import sqlalchemy.orm as so
from celery import Celery
from flask import Flask, current_app, g, request

from service.broker import make_celery
from service.config import Config
from service.db import locked, make_engine, make_session_factory
from service.models.base import Base
from service.tokens import ApiToken, identify, parse_tokens

Row = TypeVar("Row", bound=Base)


class ApiError(Exception):
    """An error the API reports as {"error": {"code", "message", "field"}}."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, **extra: object
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.extra = extra


def invalid_parameter(name: str, problem: str) -> ApiError:
    """The 422 of a query parameter, its message "<name>: <problem>"."""
    return ApiError(422, "invalid_parameter", f"{name}: {problem}", name)


def not_found(kind: str, ident: object, field: str | None = None, **extra: object) -> ApiError:
    """The 404 of an id that names no job or sweep."""
    return ApiError(404, "not_found", f"no {kind} {ident}", field, **extra)


def row_or_404(model: type[Row], ident: int, *, for_update: bool = False) -> Row:
    """The request's row of model with this id, or a 404 naming it ("no job 7")."""
    session = db_session()
    row = locked(session, model, ident) if for_update else session.get(model, ident)
    if row is None:
        raise not_found(model.__name__.lower(), ident)
    return row


def init_app(app: Flask) -> None:
    """Attach the engine, the session teardown, the Celery client and token checks to the app."""
    config: Config = app.config["TRAINQ"]
    engine = make_engine(config.database_url)
    app.extensions["trainq.engine"] = engine
    app.extensions["trainq.sessions"] = make_session_factory(engine)
    app.extensions["trainq.write_sessions"] = make_session_factory(engine, writer=True)
    app.extensions["trainq.celery"] = make_celery(config)
    app.extensions["trainq.tokens"] = parse_tokens(config.api_tokens)
    app.teardown_appcontext(_close_session)
    app.before_request(_check_token)
    app.before_request(_refuse_nul_in_query)


def config() -> Config:
    """The running app's trainq configuration."""
    return current_app.config["TRAINQ"]


def db_session() -> so.Session:
    """The request's database session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        # Requests that change state write in the same transaction they read in.
        kind = "trainq.sessions" if request.method in ("GET", "HEAD") else "trainq.write_sessions"
        g.db_session = current_app.extensions[kind]()
    return g.db_session


def write_sessions() -> so.sessionmaker[so.Session]:
    """The app's factory of writer sessions, for work outside the request's own session."""
    return current_app.extensions["trainq.write_sessions"]


def celery_client() -> Celery:
    """The app's Celery client, used only to send messages."""
    return current_app.extensions["trainq.celery"]


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def _refuse_nul_in_query() -> None:
    # No database stores a NUL in text (PostgreSQL refuses it outright): refuse it at the edge.
    for name, values in request.args.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            raise ApiError(422, "invalid_parameter", f"{name!r}: NUL bytes are not allowed", name)


def needed_scope(method: str, endpoint: str | None) -> str:
    """The scope a request needs: its view's documented one, else read for GET, submit else."""
    view = current_app.view_functions.get(endpoint or "")
    doc = getattr(view, "apidoc", None)
    if doc is not None and doc.scope:
        return doc.scope
    return "read" if method in ("GET", "HEAD") else "submit"


def guarded(path: str) -> bool:
    """Whether a path needs a token when tokens are configured: the API and the metrics."""
    return path.startswith("/api/") or path == "/metrics"


def current_token() -> ApiToken | None:
    """The token the request came with (None when the deployment has no tokens)."""
    return g.get("api_token")


def owner_name() -> str | None:
    """The owner a row created by this request records: its token's name."""
    token = current_token()
    return token.name if token else None


def require_owner(kind: str, ident: int, owner: str | None) -> None:
    """403 unless the request's token is admin or the row's own owner."""
    token = current_token()
    if token is None or token.scope == "admin" or token.name == owner:
        return
    raise ApiError(
        403,
        "forbidden",
        f"{kind} {ident} belongs to {owner or 'nobody'}: only its owner or an admin may change it",
    )


def _check_token() -> None:
    tokens: tuple[ApiToken, ...] = current_app.extensions["trainq.tokens"]
    if not tokens or not guarded(request.path):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    token = identify(tokens, given.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is required")
    g.api_token = token
    needed = needed_scope(request.method, request.endpoint)
    if not token.allows(needed):
        raise ApiError(
            403,
            "forbidden",
            f"this needs a token of scope {needed!r}; {token.name} is {token.scope!r}",
        )
