"""Request bodies the JSON parser alone would let through to a 500: deep nesting, NaN, Infinity."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from service.api.body import MAX_DEPTH
from service.models import Job, Sweep

SWEEP = '{"name": "s", "base": {"stage": "nn", "iterations": 5}, "skip_invalid": true, '


def rows(session: so.Session) -> tuple[int, int]:
    """Jobs and sweeps stored."""
    count = sa.func.count()
    jobs = session.scalar(sa.select(count).select_from(Job)) or 0
    return jobs, session.scalar(sa.select(count).select_from(Sweep)) or 0


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000,
        b"[" * 100_000,
        b'{"grid": ' * 1000,
        # Parsable, but past the cap: every later walk over the body stays shallow.
        json.dumps({"stage": "nn", "tags": json.loads("[" * 40 + "]" * 40)}).encode(),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/sweeps"])
def test_deeply_nested_body_is_400(
    client: FlaskClient, session: so.Session, path: str, body: bytes
) -> None:
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "malformed_body"
    assert f"deeper than {MAX_DEPTH} levels" in error["message"]
    assert rows(session) == (0, 0)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/jobs", '{"stage": "nn", "lr": NaN}', "lr"),
        ("/api/v1/jobs", '{"stage": "nn", "tags": ["a"], "lr": -Infinity}', "lr"),
        ("/api/v1/jobs", "Infinity", None),
        # A number too large for a double parses to inf: the same rule refuses it.
        ("/api/v1/sweeps", SWEEP + '"grid": {"lr": [1e-6, 1e999]}}', "grid.lr.1"),
        ("/api/v1/sweeps", SWEEP + '"grid": {"lr": [1e-6, NaN]}}', "grid.lr.1"),
        ("/api/v1/sweeps", SWEEP + '"grid": {"name": [NaN]}}', "grid.name.0"),
        ("/api/v1/sweeps", '{"name": "s", "base": {"stage": "nn", "N": Infinity}}', "base.N"),
    ],
)
def test_nan_and_infinity_are_422_naming_the_field(
    client: FlaskClient, session: so.Session, path: str, body: str, field: str | None
) -> None:
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 422, response.get_data()
    error = response.get_json()["error"]
    assert error["field"] == field
    assert "numbers must be finite" in error["message"]
    assert rows(session) == (0, 0)
