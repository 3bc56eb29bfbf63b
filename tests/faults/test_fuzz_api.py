"""Hostile requests, generated: never a 500, always a JSON 4xx, and no change to the database."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.db import make_session_factory
from service.loss_store import store_losses
from service.models import Checkpoint, Job, JobTag, LossChunk
from tests.faults.conftest import FIGURES

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FIELDS = [
    "stage",
    "optimizer",
    "momentum",
    "weight_decay",
    "init",
    "lr",
    "iterations",
    "N",
    "D_in",
    "H",
    "D_out",
    "seed",
]
FIELDS += ["device", "dtype", "name", "tags"]
QUERY_NAMES = [
    "status",
    "stage",
    "optimizer",
    "init",
    "lr_min",
    "lr_max",
    "sweep",
    "tag",
    "name",
    "sort",
    "limit",
]
QUERY_NAMES += ["offset", "start", "stop", "points", "format"]
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=260)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["tensors", "optim", "module", "sgd", "adam", "cuda", "float64", "zeros"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
job_bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values, max_size=8),
    st.fixed_dictionaries({"stage": st.sampled_from(["tensors", "nn", "optim", "module"])}).flatmap(
        lambda base: st.dictionaries(st.sampled_from(FIELDS), scalars, max_size=5).map(
            lambda extra: {**base, **extra}
        )
    ),
)
queries = st.dictionaries(
    st.sampled_from(QUERY_NAMES) | st.text(max_size=10), st.text(max_size=30), max_size=6
)
job_ids = st.integers(min_value=0, max_value=2**70)


@pytest.fixture
def fuzz_client(app: Flask) -> FlaskClient:
    """A client on a database holding one finished job with a history to read."""
    factory = make_session_factory(app.extensions["trainq.engine"])
    client = app.test_client()
    job_id = client.post("/api/v1/jobs", json={"stage": "nn", "iterations": 5}).get_json()["id"]
    with factory() as session, session.begin():
        store_losses(session, job_id, 0, [1.0 / (s + 1) for s in range(5)])
    return client


def row_counts(app: Flask) -> tuple[int, ...]:
    """Rows in every table a request could change, and the jobs' states."""
    factory = make_session_factory(app.extensions["trainq.engine"])
    with factory() as session:
        counts = tuple(
            session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
            for model in (Job, LossChunk, JobTag, Checkpoint)
        )
        states = tuple(session.execute(sa.select(Job.id, Job.status, Job.cancel_requested)))
    return (*counts, hash(states))


def assert_answer(response: Any, before: tuple, app: Flask) -> None:
    """A 2xx, or a 4xx with a JSON error body and the database untouched."""
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if response.status_code >= 400:
        FIGURES["bad_requests"] += 1
        body = response.get_json(silent=True)
        assert body, response.get_data()
        assert body["error"]["code"], response.get_data()
        assert body["error"]["message"], response.get_data()
        assert row_counts(app) == before


@FUZZ
@given(body=job_bodies, key=st.none() | HEADER_TEXT)
def test_fuzz_submit(fuzz_client: FlaskClient, app: Flask, body: Any, key: str | None) -> None:
    before = row_counts(app)
    headers = {"Idempotency-Key": key} if key is not None else {}
    response = fuzz_client.post(
        "/api/v1/jobs", data=json.dumps(body), content_type="application/json", headers=headers
    )
    assert_answer(response, before, app)


@FUZZ
@given(
    raw=st.binary(max_size=300),
    content_type=st.sampled_from(["application/json", "text/plain", ""]),
)
def test_fuzz_submit_raw_bytes(
    fuzz_client: FlaskClient, app: Flask, raw: bytes, content_type: str
) -> None:
    before = row_counts(app)
    response = fuzz_client.post("/api/v1/jobs", data=raw, content_type=content_type)
    assert_answer(response, before, app)


@FUZZ
@given(query=queries)
def test_fuzz_list_jobs(fuzz_client: FlaskClient, app: Flask, query: dict[str, str]) -> None:
    before = row_counts(app)
    assert_answer(fuzz_client.get("/api/v1/jobs", query_string=query), before, app)


@FUZZ
@given(job_id=job_ids | st.just(1), query=queries)
def test_fuzz_losses(fuzz_client: FlaskClient, app: Flask, job_id: int, query: dict) -> None:
    before = row_counts(app)
    response = fuzz_client.get(f"/api/v1/jobs/{job_id}/losses", query_string=query)
    assert_answer(response, before, app)


@FUZZ
@given(job_id=job_ids, path=st.text(max_size=20))
def test_fuzz_cancel_and_show(fuzz_client: FlaskClient, app: Flask, job_id: int, path: str) -> None:
    # Job 1 exists and is queued: only ids that are not it may be answered with an error.
    before = row_counts(app)
    if job_id != 1:
        assert_answer(fuzz_client.post(f"/api/v1/jobs/{job_id}/cancel"), before, app)
    assert_answer(fuzz_client.get(f"/api/v1/jobs/{job_id}"), before, app)
    assert_answer(fuzz_client.get("/api/v1/jobs/" + path), before, app)


def _cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


SWEEP_HEAD = '{"name": "s", "base": {"stage": "nn"}, "skip_invalid": true, "grid": '
# Hand-written requests that once got a 500: what the generators above rarely reach.
BAD_REQUESTS = [
    ("/api/v1/jobs", b"[" * 1000, None),
    ("/api/v1/sweeps", b'{"grid": ' * 100_000, None),
    ("/api/v1/jobs", b'{"stage": "nn", "lr": NaN}', None),
    ("/api/v1/sweeps", (SWEEP_HEAD + '{"lr": [1e-6, NaN]}}').encode(), None),
    ("/api/v1/sweeps", (SWEEP_HEAD + '{"lr": [Infinity]}}').encode(), None),
    ("/api/v1/sweeps", (SWEEP_HEAD + '{"lr": [1e999]}}').encode(), None),
    (
        "/api/v1/jobs",
        None,
        {"sort": "created", "cursor": _cursor("created", "2026-01-01", False, 1)},
    ),
    ("/api/v1/jobs", None, {"sort": "id", "cursor": _cursor("id", 2**63, False, 2**63)}),
    ("/api/v1/jobs", None, {"sort": "lr", "cursor": _cursor("lr", 10**30, False, 1)}),
]


@pytest.mark.parametrize(("path", "body", "query"), BAD_REQUESTS)
def test_bad_request_corpus(
    fuzz_client: FlaskClient, app: Flask, path: str, body: bytes | None, query: dict | None
) -> None:
    before = row_counts(app)
    if body is not None:
        response = fuzz_client.post(path, data=body, content_type="application/json")
    else:
        response = fuzz_client.get(path, query_string=query)
    assert_answer(response, before, app)
    assert response.status_code in (400, 422), response.get_data()[:300]
