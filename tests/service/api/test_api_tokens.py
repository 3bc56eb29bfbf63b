"""Token scopes and owners: read, submit, admin; owners on jobs and sweeps; 403s; ?owner=."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from service.cli import main
from service.db import make_session_factory
from service.models import Job, Sweep
from service.tokens import TokenConfigError, digest, new_token, parse_entry, parse_tokens
from tests.conftest import make_test_app
from tests.support.scoped_tokens import SWEEP, bearer, make_scoped_app


@pytest.fixture
def scoped_app(database_url: str, broker_url: str) -> Iterator[Flask]:
    """The app with four named tokens, none kept in plain text."""
    app = make_scoped_app(database_url, broker_url)
    yield app
    app.extensions["trainq.engine"].dispose()


@pytest.fixture
def scoped(scoped_app: Flask) -> FlaskClient:
    """A client of the app with scoped tokens."""
    return scoped_app.test_client()


def rows(app: Flask, model: type[Job] | type[Sweep]) -> list[tuple]:
    """Every row of a table as (id, owner, cancel_requested[, status])."""
    factory = make_session_factory(app.extensions["trainq.engine"])
    columns = [model.id, model.owner, model.cancel_requested]
    if model is Job:
        columns.append(Job.status)
    with factory() as session:
        return [tuple(row) for row in session.execute(sa.select(*columns).order_by(model.id))]


def test_each_job_and_sweep_records_its_owner(scoped: FlaskClient, scoped_app: Flask) -> None:
    job = scoped.post("/api/v1/jobs", json={"stage": "nn"}, headers=bearer("alice"))
    assert job.status_code == 201
    assert job.get_json()["owner"] == "alice"
    sweep = scoped.post("/api/v1/sweeps", json=SWEEP, headers=bearer("bob"))
    assert sweep.status_code == 201
    assert sweep.get_json()["owner"] == "bob"
    assert [r[1] for r in rows(scoped_app, Job)] == ["alice", "bob", "bob"]
    assert [r[1] for r in rows(scoped_app, Sweep)] == ["bob"]


def test_read_token_reads_but_cannot_post(scoped: FlaskClient, scoped_app: Flask) -> None:
    scoped.post("/api/v1/jobs", json={"stage": "nn"}, headers=bearer("alice"))
    before = rows(scoped_app, Job)
    assert scoped.get("/api/v1/jobs", headers=bearer("viewer")).status_code == 200
    for path, body in (("/api/v1/jobs", {"stage": "nn"}), ("/api/v1/sweeps", SWEEP)):
        response = scoped.post(path, json=body, headers=bearer("viewer"))
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"
    assert scoped.post("/api/v1/jobs/1/cancel", headers=bearer("viewer")).status_code == 403
    assert rows(scoped_app, Job) == before
    assert rows(scoped_app, Sweep) == []


def test_submit_token_cancels_only_its_own(scoped: FlaskClient, scoped_app: Flask) -> None:
    mine = scoped.post("/api/v1/jobs", json={"stage": "nn"}, headers=bearer("alice")).get_json()
    sweep = scoped.post("/api/v1/sweeps", json=SWEEP, headers=bearer("alice")).get_json()
    before_jobs, before_sweeps = rows(scoped_app, Job), rows(scoped_app, Sweep)
    # Bob may not touch Alice's job or sweep: 403, and nothing changed.
    refused = scoped.post(f"/api/v1/jobs/{mine['id']}/cancel", headers=bearer("bob"))
    assert refused.status_code == 403
    assert "alice" in refused.get_json()["error"]["message"]
    assert (
        scoped.post(f"/api/v1/sweeps/{sweep['id']}/cancel", headers=bearer("bob")).status_code
        == 403
    )
    assert rows(scoped_app, Job) == before_jobs
    assert rows(scoped_app, Sweep) == before_sweeps
    # Alice may, and so may an admin.
    ok = scoped.post(f"/api/v1/jobs/{mine['id']}/cancel", headers=bearer("alice"))
    assert ok.status_code == 200
    assert ok.get_json()["status"] == "cancelled"
    admin = scoped.post(f"/api/v1/sweeps/{sweep['id']}/cancel", headers=bearer("ops"))
    assert admin.status_code == 200
    assert {r[3] for r in rows(scoped_app, Job)} == {"cancelled"}


def test_jobs_and_sweeps_filter_by_owner(scoped: FlaskClient) -> None:
    for name in ("alice", "bob", "alice"):
        scoped.post("/api/v1/jobs", json={"stage": "nn"}, headers=bearer(name))
    scoped.post("/api/v1/sweeps", json=SWEEP, headers=bearer("bob"))
    page = scoped.get("/api/v1/jobs?owner=alice", headers=bearer("viewer")).get_json()
    assert page["total"] == 2
    assert {job["owner"] for job in page["jobs"]} == {"alice"}
    assert scoped.get("/api/v1/jobs?owner=bob", headers=bearer("viewer")).get_json()["total"] == 3
    assert scoped.get("/api/v1/jobs?owner=eve", headers=bearer("viewer")).get_json()["total"] == 0
    sweeps = scoped.get("/api/v1/sweeps?owner=bob", headers=bearer("viewer")).get_json()
    assert [s["owner"] for s in sweeps["sweeps"]] == ["bob"]
    assert (
        scoped.get("/api/v1/sweeps?owner=alice", headers=bearer("viewer")).get_json()["total"] == 0
    )


@pytest.mark.parametrize(
    ("path", "body"), [("/api/v1/jobs", {"stage": "nn"}), ("/api/v1/sweeps", SWEEP)]
)
def test_an_idempotency_key_is_each_owners_own(
    scoped: FlaskClient, scoped_app: Flask, path: str, body: dict
) -> None:
    # Given alice's submission with a key
    key = {"Idempotency-Key": "nightly"}
    first = scoped.post(path, json=body, headers={**bearer("alice"), **key})
    assert first.status_code == 201
    # When bob submits with the same key, then alice retries
    other = scoped.post(path, json=body, headers={**bearer("bob"), **key})
    again = scoped.post(path, json=body, headers={**bearer("alice"), **key})
    # Then bob got a new row of his own, and alice's retry her first one
    assert other.status_code == 201
    assert (other.get_json()["owner"], other.get_json()["id"] != first.get_json()["id"]) == (
        "bob",
        True,
    )
    assert (again.status_code, again.get_json()["id"]) == (200, first.get_json()["id"])
    model = Job if path.endswith("jobs") else Sweep
    assert sorted(r[1] for r in rows(scoped_app, model)) == ["alice", "bob"]


def test_a_plain_token_of_an_old_deployment_is_an_admin(database_url: str, broker_url: str) -> None:
    app = make_test_app(database_url, broker_url, api_tokens=("s3cret",))
    client = app.test_client()
    headers = {"Authorization": "Bearer s3cret"}
    job = client.post("/api/v1/jobs", json={"stage": "nn"}, headers=headers).get_json()
    assert job["owner"] == "token-" + digest("s3cret").hex()[:8]
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=headers).status_code == 200
    assert client.get("/api/v1/jobs").status_code == 401
    app.extensions["trainq.engine"].dispose()


def test_without_tokens_jobs_have_no_owner(client: FlaskClient) -> None:
    job = client.post("/api/v1/jobs", json={"stage": "nn"}).get_json()
    assert job["owner"] is None
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 200


def test_token_entries_parse_and_refuse_what_is_malformed() -> None:
    token = parse_entry(f"alice:read:sha256:{'ab' * 32}")
    assert (token.name, token.scope, token.digest) == ("alice", "read", bytes.fromhex("ab" * 32))
    assert token.allows("read")
    assert not token.allows("submit")
    assert parse_entry("plain").allows("admin")
    with pytest.raises(TokenConfigError):
        parse_entry("alice:root:sha256:" + "ab" * 32)
    with pytest.raises(TokenConfigError):
        parse_entry("alice:read:sha256:abc")
    with pytest.raises(TokenConfigError):
        parse_tokens((f"a:read:sha256:{'ab' * 32}", f"a:admin:sha256:{'cd' * 32}"))
    with pytest.raises(TokenConfigError):
        new_token("no spaces", "read")


def test_trainq_token_new_prints_a_secret_whose_entry_works(
    database_url: str, broker_url: str
) -> None:
    result = CliRunner().invoke(main, ["token", "new", "carol", "--scope", "read"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.splitlines())
    secret, entry = lines["token"].strip(), lines["entry"].strip()
    assert secret not in entry
    app = make_test_app(database_url, broker_url, api_tokens=(entry,))
    client = app.test_client()
    assert (
        client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    )
    refused = client.post(
        "/api/v1/jobs", json={"stage": "nn"}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert refused.status_code == 403
    app.extensions["trainq.engine"].dispose()


def test_every_api_operation_states_its_scope(scoped: FlaskClient) -> None:
    document = scoped.get("/openapi.json").get_json()
    scopes = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/") or path == "/metrics":
                assert operation["security"] == [{"bearer": []}], (method, path)
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
                scopes[(method, path)] = operation["x-trainq-scope"]
            else:
                assert "x-trainq-scope" not in operation, (method, path)
    assert scopes[("get", "/api/v1/jobs")] == "read"
    assert scopes[("get", "/metrics")] == "read"
    assert scopes[("post", "/api/v1/jobs")] == "submit"
    assert scopes[("post", "/api/v1/sweeps/{sweep_id}/cancel")] == "submit"
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
