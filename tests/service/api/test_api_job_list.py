"""GET /api/v1/jobs: sorts with NULLs last, and cursor pages that visit every row once."""

from __future__ import annotations

import base64
import json
import math
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from tests.service.results_data import T0, add_job, decay


def varied_jobs(client: FlaskClient, session: so.Session) -> list[dict[str, Any]]:
    """Jobs with tied, missing and distinct final losses, durations and creation times."""
    rows = []
    for k in range(23):
        finished = k % 5 != 0
        losses = decay(10.0, 0.5 + (k % 4) / 10, 5) if finished else None
        fields = {
            "optimizer": ("adam", "sgd", "rmsprop")[k % 3],
            "lr": 10.0 ** -(k % 4 + 1),
            "tags": ["even"] if k % 2 == 0 else ["odd"],
        }
        job_id = add_job(
            client,
            session,
            losses,
            status="succeeded" if finished else "queued",
            duration=float(k % 6) if finished else None,
            created=T0 + timedelta(seconds=k // 3),
            **fields,
        )
        rows.append(
            {
                "id": job_id,
                "final_loss": losses[-1] if losses else None,
                "duration": float(k % 6) if finished else None,
                "created": k // 3,
                "lr": fields["lr"],
                "optimizer": fields["optimizer"],
                "tag": fields["tags"][0],
                "status": "succeeded" if finished else "queued",
            }
        )
    return rows


def expected_order(rows: list[dict], key: str, descending: bool) -> list[int]:
    """Ids in the API's order: by key (NULL last either way), ties by id in the same direction."""
    present = [r for r in rows if r[key] is not None]
    missing = [r for r in rows if r[key] is None]
    present.sort(key=lambda r: (r[key], r["id"]), reverse=descending)
    missing.sort(key=lambda r: r["id"], reverse=descending)
    return [r["id"] for r in present + missing]


def walk(client: FlaskClient, limit: int, **params: Any) -> list[int]:
    """Every id reached by following next_cursor from the first page."""
    ids, cursor, pages = [], None, 0
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/jobs", query_string=query)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        ids += [job["id"] for job in body["jobs"]]
        cursor, pages = body["next_cursor"], pages + 1
        assert pages < 50
        if cursor is None:
            return ids


def walk_offsets(client: FlaskClient, limit: int, end: int, **params: Any) -> list[int]:
    """Every id on the pages at offsets 0, limit, 2 x limit, ... up to `end` (past the last)."""
    ids = []
    for offset in range(0, end, limit):
        query = {**params, "limit": limit, "offset": offset}
        response = client.get("/api/v1/jobs", query_string=query)
        assert response.status_code == 200, response.get_json()
        ids += [job["id"] for job in response.get_json()["jobs"]]
    return ids


SORT_KEYS = {"final_loss": "final_loss", "duration": "duration", "created": "created", "lr": "lr"}


@pytest.mark.parametrize(
    "sort", ["final_loss", "-final_loss", "duration", "-duration", "created", "-created", "lr"]
)
def test_cursor_walk_visits_every_row_once(
    client: FlaskClient, session: so.Session, sort: str
) -> None:
    rows = varied_jobs(client, session)
    key, descending = SORT_KEYS[sort.lstrip("-")], sort.startswith("-")
    for filters, keep in (
        ({}, lambda r: True),
        ({"optimizer": "adam,sgd"}, lambda r: r["optimizer"] in ("adam", "sgd")),
        ({"tag": "even", "lr_max": 1e-2}, lambda r: r["tag"] == "even" and r["lr"] <= 1e-2),
    ):
        want = expected_order([r for r in rows if keep(r)], key, descending)
        for limit in (1, 4, 50):
            assert walk(client, limit, sort=sort, **filters) == want
        # Offset pages agree with the cursor order, across the NULL keys' start too.
        for limit in (1, 4, 7):
            assert walk_offsets(client, limit, len(want) + 3, sort=sort, **filters) == want


def test_duration_is_finished_minus_started(client: FlaskClient, session: so.Session) -> None:
    rows = varied_jobs(client, session)
    body = client.get("/api/v1/jobs", query_string={"sort": "-duration", "limit": 3}).get_json()
    durations = sorted((r["duration"] for r in rows if r["duration"] is not None), reverse=True)
    assert [j["duration_s"] for j in body["jobs"]] == durations[:3]
    assert math.isclose(body["jobs"][0]["duration_s"], 5.0)


@pytest.mark.parametrize(
    "cursor", ["garbage!", "W10", "WyJpZCIsMSxmYWxzZSwxXQ", "WyJmaW5hbF9sb3NzIiwieCIsZmFsc2UsMV0"]
)
def test_bad_cursor_is_422(client: FlaskClient, session: so.Session, cursor: str) -> None:
    # The last two decode to a cursor of another sort, and to a non-number key.
    response = client.get("/api/v1/jobs", query_string={"sort": "final_loss", "cursor": cursor})
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "cursor"
    both = client.get("/api/v1/jobs", query_string={"cursor": "abc", "offset": 3})
    assert both.status_code == 422
    assert both.get_json()["error"]["field"] == "cursor"


def token(*parts: object) -> str:
    """A cursor written by hand, as Cursor.encode writes one."""
    raw = json.dumps(parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        # Each reached the database and failed there with a 500.
        ("created", token("created", "2026-01-01T00:00:00", False, 5)),
        ("created", token("created", "0001-01-01T00:00:00+05:00", False, 5)),
        ("id", token("id", 2**63, False, 2**63)),
        ("id", token("id", 5, False, 2**64)),
        ("final_loss", token("final_loss", 10**30, False, 5)),
        ("final_loss", token("final_loss", float("nan"), False, 5)),
        ("lr", token("lr", True, False, 5)),
    ],
)
def test_crafted_cursor_is_422(
    client: FlaskClient, session: so.Session, sort: str, cursor: str
) -> None:
    add_job(client, session, decay(5.0, 0.9, 5))
    response = client.get("/api/v1/jobs", query_string={"sort": sort, "cursor": cursor})
    assert response.status_code == 422, response.get_data()
    assert response.get_json()["error"]["field"] == "cursor"
