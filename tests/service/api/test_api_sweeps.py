"""The sweeps API against a real database and Redis (no worker: jobs stay queued unless a test
plays the worker's part with the worker's own recording functions)."""

from __future__ import annotations

import json

import pytest
import redis
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient

from service.models import Job, JobTag, Sweep
from tests.conftest import make_test_app
from tests.service.api.test_api_jobs import queued_messages
from worker.attempts.claims import claim_job
from worker.attempts.record import record_chunk

GRID = {
    "name": "opt-x-lr",
    "base": {"stage": "optim", "iterations": 5, "N": 4, "D_in": 8, "H": 4, "D_out": 2},
    "grid": {"optimizer": ["sgd", "adam"], "lr": [1e-3, 1e-2, 1e-1]},
    "seeds": [1, 2],
}


def post(client: FlaskClient, body: dict, **kwargs: object):  # type: ignore[no-untyped-def]
    """POST a sweep with its keys in the order written (the grid's order is the product's)."""
    return client.post(
        "/api/v1/sweeps", data=json.dumps(body), content_type="application/json", **kwargs
    )


def test_submit_writes_every_job_then_enqueues_them(
    client: FlaskClient, session: so.Session, broker_url: str
) -> None:
    body = {**GRID, "base": {**GRID["base"], "tags": ["sw", "x"]}, "fused": False}
    response = post(client, body)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["job_count"] == 12
    assert body["varied"] == ["optimizer", "lr", "seed"]
    assert body["counts"]["queued"] == 12
    assert body["done"] is False
    assert 0 <= body["seed"] < 2**63
    assert body["request"]["seed"] == body["seed"]
    assert response.headers["Location"].endswith(f"/api/v1/sweeps/{body['id']}")
    jobs = session.scalars(sa.select(Job).where(Job.sweep_id == body["id"]).order_by(Job.id)).all()
    assert [(j.optimizer, j.lr, j.seed) for j in jobs] == [
        (o, lr, s) for o in ("sgd", "adam") for lr in (1e-3, 1e-2, 1e-1) for s in (1, 2)
    ]
    assert all(j.status == "queued" and j.enqueued_at is not None for j in jobs)
    assert all(j.tags == ["sw", "x"] and j.name == "opt-x-lr" and j.d_in == 8 for j in jobs)
    messages = queued_messages(broker_url)
    assert sorted(m["headers"]["argsrepr"] for m in messages) == sorted(f"[{j.id}]" for j in jobs)


def test_bad_combination_is_422_with_its_index_and_stores_nothing(
    client: FlaskClient, session: so.Session, broker_url: str
) -> None:
    body = {
        "name": "bad",
        "base": {"iterations": 5},
        "grid": {"stage": ["optim", "tensors"], "optimizer": ["sgd", "adam"]},
    }
    response = post(client, body)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert (error["field"], error["index"]) == ("optimizer", 3)
    assert error["job"]["stage"] == "tensors"
    assert error["job"]["optimizer"] == "adam"
    assert session.scalar(sa.select(sa.func.count()).select_from(Job)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(Sweep)) == 0
    assert queued_messages(broker_url) == []


def test_skip_invalid_leaves_out_bad_combinations_and_says_why(
    client: FlaskClient, session: so.Session, broker_url: str
) -> None:
    body = {
        "name": "skip",
        "base": {"iterations": 5},
        "grid": {"stage": ["optim", "tensors", "nn"], "optimizer": ["sgd", "adam"]},
        "skip_invalid": True,
    }
    response = post(client, body)
    assert response.status_code == 201
    sweep = response.get_json()
    assert sweep["job_count"] == 4
    assert sweep["skipped"] == 2
    assert [(r["index"], r["field"]) for r in sweep["skipped_reasons"]] == [
        (3, "optimizer"),
        (5, "optimizer"),
    ]
    pairs = session.execute(
        sa.select(Job.stage, Job.optimizer).where(Job.sweep_id == sweep["id"]).order_by(Job.id)
    ).all()
    assert [tuple(p) for p in pairs] == [
        ("optim", "sgd"),
        ("optim", "adam"),
        ("tensors", "sgd"),
        ("nn", "sgd"),
    ]
    assert len(queued_messages(broker_url)) == 4
    all_bad = post(client, {**body, "grid": {"stage": ["nn"], "optimizer": ["adam"]}})
    assert all_bad.status_code == 422
    assert all_bad.get_json()["error"]["code"] == "no_valid_jobs"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"grid": {"lr": [0.1 * (i + 1) for i in range(11)]}}, "grid"),
        ({"random": {"n": 11, "lr": {"log_uniform": [1e-4, 1]}}}, "random"),
        ({"grid": {"lr": [0.1, 0.2, 0.3]}, "repeats": 4}, "grid"),
        ({"repeats": 11}, "repeats"),
    ],
)
def test_cap_on_jobs_per_sweep(database_url: str, broker_url: str, body: dict, field: str) -> None:
    app = make_test_app(database_url, broker_url, max_sweep_jobs=10)
    response = post(app.test_client(), {"name": "big", "base": {"stage": "optim"}, **body})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("too_many_jobs", field)
    assert "TRAINQ_MAX_SWEEP_JOBS=10" in error["message"]  # the setting that would raise it
    engine = app.extensions["trainq.engine"]
    with so.Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Job)) == 0
    engine.dispose()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "grid": {"lr": []}}, "grid.lr"),
        ({"grid": {"lr": [0.1]}}, "name"),
        ({"name": "x", "base": {"stage": "optim"}, "grid": {"lr": [0.1, -1.0]}}, "lr"),
        ({"name": "x", "seeds": [1], "repeats": 2}, "repeats"),
    ],
)
def test_malformed_sweeps_are_422_naming_the_key(
    client: FlaskClient, body: dict, field: str
) -> None:
    response = post(client, body)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field


def test_three_hundred_jobs_are_a_few_statements_and_one_broker_connection(
    app: Flask, client: FlaskClient, session: so.Session, broker_url: str
) -> None:
    # Given an app that has sent once (its first send also opens the client's pool: run alone,
    # the test would count that), a counter of every statement it sends and of Redis connections.
    assert (
        post(
            client,
            {"name": "warm", "base": {"stage": "optim", "iterations": 5}, "grid": {"lr": [0.01]}},
        ).status_code
        == 201
    )
    statements: list[tuple[str, bool]] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append((statement.split(None, 1)[0].upper(), executemany))

    engine = app.extensions["trainq.engine"]
    sa.event.listen(engine, "before_cursor_execute", count)
    probe = redis.Redis.from_url(broker_url)
    connections_before = probe.info("stats")["total_connections_received"]
    # When a sweep of 300 jobs, each with two tags, is submitted.
    body = {
        "name": "wide",
        "base": {"stage": "optim", "iterations": 5, "tags": ["a", "b"]},
        "grid": {"lr": [0.001 * (i + 1) for i in range(30)], "init": ["normal", "zeros"]},
        "repeats": 5,
    }
    response = post(client, body)
    sa.event.remove(engine, "before_cursor_execute", count)
    connections = probe.info("stats")["total_connections_received"] - connections_before
    # Then it took one INSERT per table, one UPDATE and one broker connection (the send reads
    # its rows in a read-only transaction of its own and the stamp reads the database's clock:
    # a fixed number of statements too).
    assert response.status_code == 201
    assert response.get_json()["job_count"] == 300
    kinds = [kind for kind, _ in statements]
    assert kinds.count("INSERT") == 3, statements
    assert kinds.count("UPDATE") == 1, statements
    assert len(statements) <= 15, statements
    # One kombu connection: its connect-time check and its channel's client, whatever the count
    # of jobs (a connection per job would be 300 or more).
    assert connections <= 2
    assert len(queued_messages(broker_url)) == 301
    probe.close()
    assert session.scalar(sa.select(sa.func.count()).select_from(JobTag)) == 600
    assert session.scalar(sa.select(sa.func.count()).where(Job.enqueued_at.is_not(None))) == 301


def test_idempotency_key_returns_the_same_sweep(
    client: FlaskClient, session: so.Session, broker_url: str
) -> None:
    headers = {"Idempotency-Key": "sweep-1"}
    unfused = {**GRID, "fused": False}  # one message per job, to count them
    first = post(client, unfused, headers=headers)
    again = post(client, unfused, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["id"] == again.get_json()["id"]
    assert session.scalar(sa.select(sa.func.count()).select_from(Job)) == 12
    assert len(queued_messages(broker_url)) == 12


def test_list_show_and_404(client: FlaskClient, session: so.Session) -> None:
    first = post(client, GRID).get_json()
    second = post(client, {**GRID, "name": "other", "seeds": [3]}).get_json()
    session.execute(
        sa.update(Job)
        .where(Job.sweep_id == second["id"])
        .values(status="succeeded", final_loss=1.0)
    )
    session.commit()
    page = client.get("/api/v1/sweeps", query_string={"limit": 1}).get_json()
    assert page["total"] == 2
    assert page["next_offset"] == 1
    assert [s["id"] for s in page["sweeps"]] == [second["id"]]
    assert page["sweeps"][0]["counts"]["succeeded"] == 6
    assert page["sweeps"][0]["done"]
    shown = client.get(f"/api/v1/sweeps/{first['id']}").get_json()
    assert shown["counts"] == {
        "queued": 12,
        "running": 0,
        "succeeded": 0,
        "diverged": 0,
        "failed": 0,
        "cancelled": 0,
        "pruned": 0,
    }
    assert shown["done"] is False
    assert shown["finished"] == 0
    assert client.get("/api/v1/sweeps", query_string={"name": "other"}).get_json()["total"] == 1
    assert client.get("/api/v1/sweeps/999").status_code == 404
    assert client.get("/api/v1/sweeps/999/results").status_code == 404
    assert client.post("/api/v1/sweeps/999/cancel").status_code == 404


def test_cancel_stops_queued_jobs_and_flags_running_ones(
    client: FlaskClient, session: so.Session
) -> None:
    sweep = post(client, GRID).get_json()
    ids = session.scalars(sa.select(Job.id).where(Job.sweep_id == sweep["id"]).order_by(Job.id))
    ids = list(ids)
    # A worker has taken the first job and another finished the second.
    claim, _ = claim_job(session, ids[0], "w@host", 60, max_attempts=3)
    session.execute(sa.update(Job).where(Job.id == ids[1]).values(status="succeeded"))
    session.commit()
    response = client.post(f"/api/v1/sweeps/{sweep['id']}/cancel")
    assert response.status_code == 202
    body = response.get_json()
    assert body["cancel_requested"] is True
    assert body["counts"]["cancelled"] == 10
    assert body["counts"]["running"] == 1
    session.expire_all()
    running = session.get(Job, ids[0])
    assert running.status == "running"
    assert running.cancel_requested
    assert session.get(Job, ids[1]).status == "succeeded"
    cancelled = session.scalars(sa.select(Job).where(Job.id.in_(ids[2:]))).all()
    assert all(j.status == "cancelled" and j.finished_at is not None for j in cancelled)
    # The running job stops at its next flush, as the worker sees it.
    assert claim is not None
    assert record_chunk(session, claim, 0, [1.0], 60) is False
    session.commit()


def test_sweep_accepted_while_the_broker_is_down_is_kept_for_the_reconciler(
    database_url: str,
) -> None:
    from service.ops.redis_server import free_port

    app = make_test_app(database_url, f"redis://127.0.0.1:{free_port()}/0")
    response = post(app.test_client(), GRID)
    assert response.status_code == 201
    assert response.get_json()["job_count"] == 12
    engine = app.extensions["trainq.engine"]
    with so.Session(engine) as session:
        unsent = session.scalar(
            sa.select(sa.func.count()).where(Job.status == "queued", Job.enqueued_at.is_(None))
        )
    assert unsent == 12
    engine.dispose()


def test_fused_sweep_sends_one_message_per_compatible_stack(
    client: FlaskClient, session: so.Session, broker_url: str
) -> None:
    body = {**GRID, "fused": True}
    response = post(client, body)
    assert response.status_code == 201, response.get_json()
    jobs = session.scalars(sa.select(Job).where(Job.sweep_id == response.get_json()["id"])).all()
    messages = queued_messages(broker_url)
    assert {m["headers"]["task"] for m in messages} == {"trainq.train_batch"}
    # sgd and adam cannot share a stack; within an optimizer every lr and seed can.
    batches = [json.loads(m["headers"]["argsrepr"])[0] for m in messages]
    assert sorted(len(b) for b in batches) == [6, 6]
    by_id = {job.id: job for job in jobs}
    assert sorted(i for b in batches for i in b) == sorted(by_id)
    assert all(len({by_id[i].optimizer for i in batch}) == 1 for batch in batches)
    assert all(job.enqueued_at is not None for job in jobs)


@pytest.mark.parametrize("fused", ["yes", "AUTO", 1, None])
def test_fused_must_be_auto_true_or_false(client: FlaskClient, fused: object) -> None:
    response = post(client, {**GRID, "fused": fused})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "fused"
    assert "'auto', true or false" in error["message"]


def test_by_default_small_jobs_fuse_and_default_size_jobs_go_singly(
    client: FlaskClient, session: so.Session, broker_url: str
) -> None:
    # Given one sweep of small jobs and one of the default size, neither naming `fused`
    small = post(client, GRID).get_json()
    default = post(
        client, {"name": "big", "base": {"stage": "optim"}, "grid": {"seed": [1, 2, 3]}}
    ).get_json()
    # Then both store the default they ran under
    assert small["request"]["fused"] == default["request"]["fused"] == "auto"
    # and the small jobs went out as two stacks (one per optimizer), the default ones singly
    messages = [
        (m["headers"]["task"], json.loads(m["headers"]["argsrepr"])[0])
        for m in queued_messages(broker_url)
    ]
    small_ids = set(session.scalars(sa.select(Job.id).where(Job.sweep_id == small["id"])).all())
    default_ids = session.scalars(
        sa.select(Job.id).where(Job.sweep_id == default["id"]).order_by(Job.id)
    ).all()
    batches = [ids for task, ids in messages if task == "trainq.train_batch"]
    singles = sorted(ids for task, ids in messages if task == "trainq.train_job")
    assert sorted(len(b) for b in batches) == [6, 6]
    assert {i for b in batches for i in b} == small_ids
    assert singles == default_ids
    jobs = session.scalars(sa.select(Job).where(Job.sweep_id.in_([small["id"], default["id"]])))
    assert all(job.enqueued_at is not None for job in jobs)


def test_fused_true_forces_a_stack_where_auto_would_not(
    client: FlaskClient, broker_url: str
) -> None:
    body = {"name": "big", "base": {"stage": "optim"}, "grid": {"seed": [1, 2, 3]}, "fused": True}
    response = post(client, body)
    assert response.status_code == 201, response.get_json()
    messages = queued_messages(broker_url)
    assert [m["headers"]["task"] for m in messages] == ["trainq.train_batch"]
