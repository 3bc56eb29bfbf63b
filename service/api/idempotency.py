"""Idempotency-Key: a retried submission is answered (200) with what the first one stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so
from flask import Flask, Response, jsonify, request

from service.api.extensions import ApiError, db_session, owner_name
from service.models import Job, Sweep

# The rows a request with an Idempotency-Key creates.
Submitted = TypeVar("Submitted", Job, Sweep)


class Resubmitted(Exception):
    """A submission whose key an earlier request used: its answer is that request's row."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("already submitted with this Idempotency-Key")
        self.body = body


def idempotency_key() -> str | None:
    """The request's Idempotency-Key header: 1 to 200 characters, or absent."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise ApiError(
            422, "invalid_header", "Idempotency-Key: 1 to 200 characters", "Idempotency-Key"
        )
    return key or None


def previous_submission(model: type[Submitted], key: str | None) -> Submitted | None:
    """The row an earlier request of the same owner with this Idempotency-Key created, or None."""
    if not key:
        return None
    # Keys are unique per owner (models/base.owner_key_indexes); no owner is one owner.
    name = owner_name()
    owner = model.owner.is_(None) if name is None else model.owner == name
    return db_session().scalar(sa.select(model).where(owner, model.idempotency_key == key))


def answer_if_submitted(
    model: type[Submitted], key: str | None, show: Callable[[Submitted], dict[str, Any]]
) -> None:
    """Answer with the earlier request's row (raise Resubmitted) if one used this key."""
    existing = previous_submission(model, key)
    if existing is not None:
        raise Resubmitted(show(existing))


@contextmanager
def stored_once(
    model: type[Submitted], key: str | None, show: Callable[[Submitted], dict[str, Any]]
) -> Iterator[so.Session]:
    """Write the submission in the block, then commit it, unless a request with the same key
    committed first between the check and now: its row is the answer (raise Resubmitted)."""
    session = db_session()
    try:
        yield session
        session.commit()
    except sqlalchemy.exc.IntegrityError:
        session.rollback()
        # The key's unique index refused the row; any other constraint is a real error.
        existing = previous_submission(model, key)
        if existing is None:
            raise
        raise Resubmitted(show(existing)) from None


def init_app(app: Flask) -> None:
    """Answer a resubmission with the first request's row, as 200."""

    @app.errorhandler(Resubmitted)
    def _resubmitted(resubmitted: Resubmitted) -> tuple[Response, int]:
        return jsonify(resubmitted.body), 200
