"""Limits per client: submissions per minute (Flask-Limiter on the broker's Redis) and a cap on
each owner's queued-plus-running jobs."""

from __future__ import annotations

import time

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded

from service.active_cap import active_jobs
from service.api.errors import error_response
from service.api.extensions import ApiError, config, current_token, db_session, owner_name
from service.config import Config

# The views a submission limit counts, sharing one budget per client.
SUBMISSIONS = frozenset({"jobs.submit_job", "sweeps.submit_sweep"})


def client_key() -> str:
    """Whom a limit counts: the token's name, or the address without tokens."""
    token = current_token()
    return f"token:{token.name}" if token else f"addr:{request.remote_addr or '-'}"


def _not_a_submission() -> bool:
    return request.endpoint not in SUBMISSIONS or request.method != "POST"


def init_app(app: Flask) -> None:
    """A limiter per app on the broker's Redis, so every gunicorn process shares the counts."""
    cfg: Config = app.config["TRAINQ"]
    rate = cfg.submit_rate_limit.strip()
    enabled = rate.lower() not in ("", "0", "off")
    limiter = Limiter(
        client_key,
        app=app,
        application_limits=[rate] if enabled else [],
        application_limits_exempt_when=_not_a_submission,
        storage_uri=cfg.broker_url,
        # A Redis that is down or stalled must not hold up a submission: the limit is skipped.
        storage_options={"socket_timeout": 1, "socket_connect_timeout": 1},
        swallow_errors=True,
        key_prefix="trainq",
        enabled=enabled,
    )
    app.extensions["trainq.limiter"] = limiter

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(error: RateLimitExceeded) -> tuple[Response, int]:
        current = limiter.current_limit
        wait = max(1, int((current.reset_at if current else time.time() + 60) - time.time()))
        response, status = error_response(
            429,
            "rate_limited",
            f"more than {error.limit.limit} submissions for {client_key()}: retry in {wait} s",
            None,
            setting="TRAINQ_SUBMIT_RATE_LIMIT",
        )
        response.headers["Retry-After"] = str(wait)
        return response, status


def check_active_cap(new_jobs: int) -> None:
    """429 naming TRAINQ_MAX_ACTIVE_JOBS_PER_OWNER when these jobs would take the submitting
    owner past its cap on queued-plus-running jobs; call it in the transaction that inserts them."""
    cap = config().max_active_jobs_per_owner
    if cap <= 0:
        return
    owner = owner_name()
    # Under the owner's lock until the request's insert commits (service/active_cap.py).
    active = active_jobs(db_session(), owner)
    if active + new_jobs > cap:
        raise ApiError(
            429,
            "too_many_active_jobs",
            f"{owner or 'this deployment'} has {active} queued or running jobs; {new_jobs} more"
            f" would pass TRAINQ_MAX_ACTIVE_JOBS_PER_OWNER={cap}",
            None,
            setting="TRAINQ_MAX_ACTIVE_JOBS_PER_OWNER",
            active=active,
            cap=cap,
        )
