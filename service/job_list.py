"""Listing jobs: sort keys, and keyset (cursor) pages that stay fast on large tables."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from service.db import row_count
from service.models import Job


class duration_seconds(FunctionElement[float]):  # lowercase: used like a SQL function
    """finished_at - started_at in seconds, written for each dialect."""

    type = sa.Double()
    inherit_cache = True
    name = "duration_seconds"


@compiles(duration_seconds)
def _duration_default(element: duration_seconds, compiler: Any, **kw: Any) -> str:
    return "EXTRACT(EPOCH FROM (jobs.finished_at - jobs.started_at))"


@compiles(duration_seconds, "sqlite")
def _duration_sqlite(element: duration_seconds, compiler: Any, **kw: Any) -> str:
    # SQLite keeps timestamps as text; julianday() turns them into fractional days.
    return "((julianday(jobs.finished_at) - julianday(jobs.started_at)) * 86400.0)"


# Sort name -> the key expression; every order ends with the id so keys are unique.
SORTS: dict[str, so.QueryableAttribute[Any] | ColumnElement[Any]] = {
    "created": Job.created_at,
    "id": Job.id,
    "final_loss": Job.final_loss,
    "min_loss": Job.min_loss,
    "lr": Job.lr,
    "duration": duration_seconds(),
}
NULLABLE_SORTS = frozenset({"final_loss", "min_loss", "duration"})
SORT_CHOICES = tuple(SORTS) + tuple(f"-{name}" for name in SORTS)
# The largest integer a column holds and a driver binds (SQLite's overflows past it).
MAX_ROW_ID = 2**63 - 1


class CursorError(ValueError):
    """A cursor that is not one this API handed out for this sort."""


@dataclass(frozen=True)
class Cursor:
    """Where the last page ended: its sort key, whether that key was NULL, and its id."""

    sort: str
    value: Any
    is_null: bool
    id: int

    def encode(self) -> str:
        """An opaque URL-safe token."""
        raw = json.dumps([self.sort, self.value, self.is_null, self.id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, sort: str) -> Cursor:
        """The cursor in a token, checked against the sort it must continue."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            name, value, is_null, job_id = json.loads(raw)
        except (binascii.Error, ValueError, TypeError):
            raise CursorError("not a cursor from this API") from None
        if name != sort:
            raise CursorError(f"the cursor continues sort {name!r}, not {sort!r}")
        if not (_is_row_id(job_id) and isinstance(is_null, bool)):
            raise CursorError("not a cursor from this API")
        if not (is_null or _is_key(name, value)):
            raise CursorError("not a cursor from this API")
        return cls(name, value, is_null, job_id)


def _is_row_id(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_ROW_ID


def _is_key(sort: str, value: Any) -> bool:
    """Whether a cursor's key is one the sort's column can hold and be compared with."""
    if sort == "created":
        try:
            # The column is UTC: a timestamp without a zone is not one this API wrote, and
            # one that leaves the calendar in UTC (year 1 at +05:00) cannot be stored.
            when = datetime.fromisoformat(value)
            return when.tzinfo is not None and when.astimezone(UTC) is not None
        except (TypeError, ValueError, OverflowError):
            return False
    if sort == "id":
        return _is_row_id(value)
    if type(value) is int:  # a float column's key the database gave as an integer
        return abs(value) <= MAX_ROW_ID
    return type(value) is float and math.isfinite(value)


def _cursor_value(sort: str, value: Any) -> Any:
    """A key as read from the database, in JSON form (the database's own number, so the
    next page compares against exactly the value it stored or computed)."""
    if sort == "created" and value is not None:
        return value.isoformat()
    return value


def _bind_value(sort: str, value: Any) -> Any:
    """A decoded cursor's key as the column's type (Cursor.decode checked that it is one)."""
    return datetime.fromisoformat(value) if sort == "created" else value


def offset_page(
    session: so.Session, query: sa.Select, sort: str, limit: int, offset: int
) -> list[Job]:
    """The page `offset` rows in, in the sort's order with NULL keys last.

    The skipped rows are walked as ids alone, which an index on (filter columns, key, id)
    answers without reading a row; only the page's rows are read. NULL keys are a second
    range, as in keyset_page, so neither needs a sort.
    """
    name, descending = sort.lstrip("-"), sort.startswith("-")
    key = SORTS[name]
    ids_query = query.with_only_columns(Job.id)
    by_id = Job.id.desc() if descending else Job.id.asc()
    order = [key.desc() if descending else key.asc(), by_id]
    if name not in NULLABLE_SORTS:
        ids = list(session.scalars(ids_query.order_by(*order).limit(limit).offset(offset)))
    else:
        valued = ids_query.where(key.is_not(None))
        ids = list(session.scalars(valued.order_by(*order).limit(limit).offset(offset)))
        if len(ids) < limit:
            # The page ends among the NULL keys: it starts there too when no valued row is on it.
            skip = 0
            if not ids:
                skip = offset - row_count(session, valued)
            nulls = ids_query.where(key.is_(None)).order_by(by_id)
            ids += session.scalars(nulls.limit(limit - len(ids)).offset(skip))
    jobs = {job.id: job for job in session.scalars(sa.select(Job).where(Job.id.in_(ids)))}
    # A job deleted between the two reads is left out of the page.
    return [jobs[job_id] for job_id in ids if job_id in jobs]


def keyset_page(
    session: so.Session, query: sa.Select, sort: str, limit: int, cursor: Cursor | None
) -> tuple[list[Job], Cursor | None]:
    """One page after `cursor`, and the cursor of the next page (None at the end).

    NULL keys come after every value, in id order. Non-NULL and NULL keys are read by two
    plain range scans, so each can use an index on (filter columns, key, id).
    """
    name, descending = sort.lstrip("-"), sort.startswith("-")
    key = SORTS[name]
    rows: list[tuple[Job, Any]] = []
    if cursor is None or not cursor.is_null:
        part = query.where(key.is_not(None)) if name in NULLABLE_SORTS else query
        if cursor is not None:
            value = _bind_value(name, cursor.value)
            # A row-value comparison, so both databases seek the (key, id) index to it.
            here = sa.tuple_(key, Job.id)
            there = sa.tuple_(sa.literal(value, key.type), sa.literal(cursor.id))
            after = here < there if descending else here > there
            part = part.where(after)
        order = [key.desc(), Job.id.desc()] if descending else [key.asc(), Job.id.asc()]
        keyed = part.add_columns(key.label("sort_key")).order_by(*order).limit(limit + 1)
        rows = [(row[0], row[1]) for row in session.execute(keyed)]
    if len(rows) <= limit and name in NULLABLE_SORTS:
        part = query.where(key.is_(None))
        if cursor is not None and cursor.is_null:
            part = part.where(Job.id < cursor.id if descending else Job.id > cursor.id)
        order = [Job.id.desc()] if descending else [Job.id.asc()]
        nulls = session.scalars(part.order_by(*order).limit(limit + 1 - len(rows)))
        rows += [(job, None) for job in nulls]
    jobs = [job for job, _ in rows[:limit]]
    if len(rows) <= limit:
        return jobs, None
    last, value = rows[limit - 1]
    return jobs, Cursor(name, _cursor_value(name, value), value is None, last.id)
