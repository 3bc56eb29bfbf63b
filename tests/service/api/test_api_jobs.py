"""The jobs API against a real database and Redis (no worker: messages stay in the queue)."""

from __future__ import annotations

import json

import pytest
import redis
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient

from service.api.idempotency import Resubmitted, stored_once
from service.jobs import job_to_dict, new_job
from service.jobspec import Limits, validate_job
from service.loss_store import store_losses
from service.models import Job, JobTag, LossChunk
from tests.conftest import make_test_app


def queued_messages(broker_url: str, queue: str = "cpu") -> list[dict]:
    """The Celery messages waiting in a Redis queue."""
    client = redis.Redis.from_url(broker_url)
    try:
        return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


def test_submit_writes_row_then_enqueues(
    client: FlaskClient, session: so.Session, broker_url: str
) -> None:
    response = client.post("/api/v1/jobs", json={"stage": "module", "tags": ["a", "b"]})
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "queued"
    assert (body["optimizer"], body["init"], body["lr"]) == ("adam", "default", 1e-4)
    assert body["tags"] == ["a", "b"]
    assert body["enqueued_at"] is not None
    assert response.headers["Location"].endswith(f"/api/v1/jobs/{body['id']}")
    job = session.get(Job, body["id"])
    assert job is not None
    assert job.seed == body["seed"]
    assert job.queue == "cpu"
    assert [row.tag for row in job.tag_rows] == ["a", "b"]
    messages = queued_messages(broker_url)
    assert len(messages) == 1
    assert messages[0]["headers"]["task"] == "trainq.train_job"
    assert messages[0]["content-type"] == "application/json"


def test_cuda_jobs_go_to_the_gpu_queue(client: FlaskClient, broker_url: str) -> None:
    body = client.post("/api/v1/jobs", json={"stage": "nn", "device": "cuda"}).get_json()
    assert body["queue"] == "gpu"
    assert len(queued_messages(broker_url, "gpu")) == 1
    assert queued_messages(broker_url, "cpu") == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"stage": "tensors", "optimizer": "adam"}, "optimizer"),
        ({"stage": "optim", "lr": 0}, "lr"),
        ({"stage": "optim", "bogus": 1}, "bogus"),
        ({"stage": "nn", "iterations": 10**6}, "iterations"),
        ({"stage": "nn", "N": 10**5, "D_in": 10**5}, "N"),
        ({"optimizer": "sgd"}, "stage"),
    ],
)
def test_invalid_job_is_422_naming_the_field_and_stores_nothing(
    client: FlaskClient, session: so.Session, broker_url: str, payload: dict, field: str
) -> None:
    response = client.post("/api/v1/jobs", json=payload)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == field
    assert error["code"] == "invalid_field"
    assert session.scalar(sa.select(sa.func.count(Job.id))) == 0
    assert queued_messages(broker_url) == []


@pytest.mark.parametrize("body", [b"{not json", b"", b"null"])
def test_malformed_body_is_400(client: FlaskClient, body: bytes) -> None:
    response = client.post("/api/v1/jobs", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_body"


def test_oversized_body_is_413(database_url: str, broker_url: str) -> None:
    app = make_test_app(database_url, broker_url, max_request_bytes=1000)
    response = app.test_client().post(
        "/api/v1/jobs",
        data=json.dumps({"stage": "nn", "name": "x" * 2000}),
        content_type="application/json",
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"
    app.extensions["trainq.engine"].dispose()


def without_warnings(answer: dict) -> dict:
    """A submission's answer as the job it stored: no worker runs here, so it also warns."""
    assert answer["warnings"][0].startswith("no live worker on queue cpu")
    return {k: v for k, v in answer.items() if k != "warnings"}


def test_idempotency_key_returns_the_same_job(
    client: FlaskClient, session: so.Session, broker_url: str
) -> None:
    headers = {"Idempotency-Key": "abc-123"}
    first = client.post("/api/v1/jobs", json={"stage": "nn"}, headers=headers)
    again = client.post("/api/v1/jobs", json={"stage": "nn"}, headers=headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert first.get_json()["id"] == again.get_json()["id"]
    assert session.scalar(sa.select(sa.func.count(Job.id))) == 1
    assert len(queued_messages(broker_url)) == 1


def test_a_submission_that_loses_the_race_on_its_key_answers_with_the_winner(
    app: Flask, client: FlaskClient, session: so.Session
) -> None:
    # Given a job stored with a key, and a second request past the check before it was stored
    winner = client.post("/api/v1/jobs", json={"stage": "nn"}, headers={"Idempotency-Key": "k"})
    spec = validate_job({"stage": "nn"}, Limits())
    with app.test_request_context("/api/v1/jobs", method="POST"):
        # When that request commits its own row with the same key
        loser = new_job(spec, "cpu", idempotency_key="k")
        with pytest.raises(Resubmitted) as resubmitted, stored_once(Job, "k", job_to_dict) as s:
            s.add(loser)
        # Then the unique index refuses it, and the answer is the winner's job (whose own
        # answer also warned that no worker runs here)
        assert resubmitted.value.body == without_warnings(winner.get_json())
    # and a row refused for another reason (here its id) is an error, not a resubmission
    with (
        app.test_request_context("/api/v1/jobs", method="POST"),
        pytest.raises(sa.exc.IntegrityError),
        stored_once(Job, "other", job_to_dict) as s,
    ):
        s.add(new_job(spec, "cpu", idempotency_key="other", id=winner.get_json()["id"]))
    assert session.scalar(sa.select(sa.func.count(Job.id))) == 1


def test_get_job_and_404(client: FlaskClient) -> None:
    job = client.post("/api/v1/jobs", json={"stage": "nn", "name": "n1"}).get_json()
    got = client.get(f"/api/v1/jobs/{job['id']}")
    assert got.status_code == 200
    assert got.get_json() == without_warnings(job)
    missing = client.get("/api/v1/jobs/999999")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"


def test_list_filters_and_pages(client: FlaskClient) -> None:
    ids = {}
    for stage, optimizer, init, lr, tag in [
        ("tensors", "sgd", "normal", 1e-6, "x"),
        ("optim", "adam", "xavier_uniform", 1e-3, "x"),
        ("optim", "rmsprop", "normal", 1e-2, "y"),
        ("module", "adam", "default", 1e-4, "y"),
    ]:
        body = {"stage": stage, "optimizer": optimizer, "init": init, "lr": lr, "tags": [tag]}
        ids[(stage, optimizer)] = client.post("/api/v1/jobs", json=body).get_json()["id"]

    def listed(**params: object) -> list[int]:
        response = client.get("/api/v1/jobs", query_string=params)
        assert response.status_code == 200
        return [job["id"] for job in response.get_json()["jobs"]]

    assert listed(stage="optim") == [ids[("optim", "rmsprop")], ids[("optim", "adam")]]
    assert listed(optimizer="adam", sort="id") == [ids[("optim", "adam")], ids[("module", "adam")]]
    assert listed(init="normal", sort="id") == [ids[("tensors", "sgd")], ids[("optim", "rmsprop")]]
    assert listed(lr_min=1e-4, lr_max=1e-3, sort="lr") == [
        ids[("module", "adam")],
        ids[("optim", "adam")],
    ]
    assert set(listed(tag="y")) == {ids[("optim", "rmsprop")], ids[("module", "adam")]}
    assert len(listed(status="queued")) == 4
    assert listed(status="running") == []
    page = client.get("/api/v1/jobs", query_string={"limit": 3, "sort": "id"}).get_json()
    assert page["total"] == 4
    assert page["next_offset"] == 3
    assert len(page["jobs"]) == 3
    rest = client.get("/api/v1/jobs", query_string={"limit": 3, "offset": 3, "sort": "id"})
    assert [job["id"] for job in rest.get_json()["jobs"]] == [ids[("module", "adam")]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"stage": "cnn"}, "stage"),
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        # An empty value is not a missing one (found by Schemathesis: `?limit=` answered 200).
        ({"limit": ""}, "limit"),
        ({"lr_min": ""}, "lr_min"),
        ({"sort": ""}, "sort"),
        ({"lr_min": "nan"}, "lr_min"),
        ({"sort": "colour"}, "sort"),
    ],
)
def test_bad_list_parameters_are_422(client: FlaskClient, params: dict, field: str) -> None:
    response = client.get("/api/v1/jobs", query_string=params)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field


def test_losses_window_downsample_and_csv(client: FlaskClient, session: so.Session) -> None:
    job_id = client.post("/api/v1/jobs", json={"stage": "nn"}).get_json()["id"]
    values = [1000.0 / (step + 1) for step in range(500)]
    store_losses(session, job_id, 0, values)
    session.commit()
    whole = client.get(f"/api/v1/jobs/{job_id}/losses").get_json()
    assert whole["steps"] == list(range(500))
    assert whole["losses"] == values
    window = client.get(f"/api/v1/jobs/{job_id}/losses?start=10&stop=20").get_json()
    assert window["steps"] == list(range(10, 20))
    assert window["losses"] == values[10:20]
    thin = client.get(f"/api/v1/jobs/{job_id}/losses?points=50").get_json()
    assert len(thin["steps"]) <= 50
    assert thin["steps"][0] == 0
    assert thin["steps"][-1] == 499
    assert thin["steps"] == sorted(set(thin["steps"]))
    assert all(values[s] == v for s, v in zip(thin["steps"], thin["losses"], strict=True))
    csv_text = client.get(f"/api/v1/jobs/{job_id}/losses?format=csv&stop=3").get_data(as_text=True)
    assert csv_text.splitlines() == ["step,loss", "0,1000.0", "1,500.0", f"2,{1000.0 / 3!r}"]
    bad = client.get(f"/api/v1/jobs/{job_id}/losses?points=-1")
    assert bad.status_code == 422
    assert bad.get_json()["error"]["field"] == "points"


def test_cancel_queued_job(client: FlaskClient, session: so.Session) -> None:
    job_id = client.post("/api/v1/jobs", json={"stage": "nn"}).get_json()["id"]
    response = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.get_json()["status"] == "cancelled"
    assert session.get(Job, job_id).status == "cancelled"
    assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    assert client.post("/api/v1/jobs/424242/cancel").status_code == 404


def test_cancel_finished_job_is_409(client: FlaskClient, session: so.Session) -> None:
    job_id = client.post("/api/v1/jobs", json={"stage": "nn"}).get_json()["id"]
    session.execute(sa.update(Job).where(Job.id == job_id).values(status="succeeded"))
    session.commit()
    response = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "already_finished"


def test_tokens_guard_the_api(database_url: str, broker_url: str) -> None:
    app = make_test_app(database_url, broker_url, api_tokens=("s3cret", "other"))
    client = app.test_client()
    assert client.get("/api/v1/jobs").status_code == 401
    assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/v1/jobs", headers={"Authorization": "Basic s3cret"}).status_code == 401
    ok = client.get("/api/v1/jobs", headers={"Authorization": "Bearer other"})
    assert ok.status_code == 200
    assert client.get("/health").status_code == 200
    app.extensions["trainq.engine"].dispose()


def test_health_ok_with_database_and_broker(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["database"]["ok"]
    assert body["broker"]["ok"]
    assert body["workers"] == {"cpu": [], "gpu": []}


def test_health_503_when_broker_is_down(database_url: str) -> None:
    from service.ops.redis_server import free_port

    app = make_test_app(database_url, f"redis://127.0.0.1:{free_port()}/0")
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["broker"]["ok"] is False
    app.extensions["trainq.engine"].dispose()


def test_submission_with_broker_down_is_kept_for_the_reconciler(database_url: str) -> None:
    from service.ops.redis_server import free_port

    app = make_test_app(database_url, f"redis://127.0.0.1:{free_port()}/0")
    response = app.test_client().post("/api/v1/jobs", json={"stage": "nn"})
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "queued"
    assert body["enqueued_at"] is None
    engine = app.extensions["trainq.engine"]
    with so.Session(engine) as session:
        assert session.get(Job, body["id"]).enqueued_at is None
    engine.dispose()


def test_deleting_a_job_removes_its_rows(session: so.Session, client: FlaskClient) -> None:
    job_id = client.post("/api/v1/jobs", json={"stage": "nn", "tags": ["t"]}).get_json()["id"]
    store_losses(session, job_id, 0, [1.0])
    session.commit()
    session.delete(session.get(Job, job_id))
    session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(LossChunk)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(JobTag)) == 0


@pytest.mark.parametrize("path", ["/api/v1/jobs/{}", "/api/v1/jobs/{}/losses", "/api/v1/sweeps/{}"])
def test_ids_beyond_the_integer_range_are_404(client: FlaskClient, path: str) -> None:
    response = client.get(path.format(10**22))
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert client.post(f"/api/v1/jobs/{2**31}/cancel").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("get", "/api/v1/jobs", {"query_string": {"tag": "\x00"}}, "tag"),
        ("get", "/api/v1/jobs", {"query_string": {"name": "a\x00b"}}, "name"),
        ("post", "/api/v1/jobs", {"json": {"stage": "nn", "name": "a\x00b"}}, "name"),
        ("post", "/api/v1/jobs", {"json": {"stage": "nn", "tags": ["t\x00"]}}, "tags.0"),
        ("post", "/api/v1/sweeps", {"json": {"name": "s\x00", "base": {"stage": "nn"}}}, "name"),
    ],
)
def test_nul_bytes_are_refused_at_the_edge(
    client: FlaskClient, session: so.Session, method: str, path: str, kwargs: dict, field: str
) -> None:
    # PostgreSQL cannot store NUL in text: it must be a 422, never a 500 from the database.
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["field"] == field
    assert session.scalar(sa.select(sa.func.count(Job.id))) == 0
