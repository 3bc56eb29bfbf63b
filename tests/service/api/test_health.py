"""/health with no worker at all: degraded, not ok; and every submission says its jobs wait."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.service.api.test_api_sweeps import GRID

NO_CPU_WORKER = (
    "no live worker on queue cpu: its jobs stay queued until one starts"
    " (`trainq worker --queues cpu`, or `make run`)"
)


def test_health_is_degraded_without_a_worker_on_the_default_queue(client: FlaskClient) -> None:
    response = client.get("/health")
    # Still 200: the API takes jobs, they only wait
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["warnings"] == [NO_CPU_WORKER]
    # A queue nothing is routed to (no GPU job waits) is no reason to worry
    assert not any("queue gpu" in warning for warning in body["warnings"])


def test_a_job_waiting_on_a_queue_with_no_worker_is_in_health(client: FlaskClient) -> None:
    assert client.post("/api/v1/jobs", json={"stage": "nn", "device": "cuda"}).status_code == 201
    warnings = client.get("/health").get_json()["warnings"]
    assert [w.split(":")[0] for w in warnings] == [
        "no live worker on queue cpu",
        "no live worker on queue gpu",
    ]


def test_submissions_to_a_queue_with_no_worker_answer_a_warning(client: FlaskClient) -> None:
    job = client.post("/api/v1/jobs", json={"stage": "nn"})
    assert job.status_code == 201
    assert job.get_json()["warnings"] == [NO_CPU_WORKER]
    on_gpu = client.post("/api/v1/jobs", json={"stage": "nn", "device": "cuda"}).get_json()
    assert on_gpu["warnings"][0].startswith("no live worker on queue gpu:")
    grid = client.post("/api/v1/sweeps", json=GRID)
    assert grid.status_code == 201
    assert grid.get_json()["warnings"] == [NO_CPU_WORKER]
    search = {
        "name": "search",
        "base": {"stage": "optim", "iterations": 5},
        "search": {"method": "random", "n": 2, "space": {"lr": {"log_uniform": [1e-4, 1e-2]}}},
    }
    searched = client.post("/api/v1/sweeps", json=search)
    assert searched.status_code == 201
    assert searched.get_json()["warnings"] == [NO_CPU_WORKER]
    # A replay of a submission is the stored job, as before
    again = client.post("/api/v1/jobs", json={"stage": "nn"}, headers={"Idempotency-Key": "k"})
    assert "warnings" in again.get_json()
    replay = client.post("/api/v1/jobs", json={"stage": "nn"}, headers={"Idempotency-Key": "k"})
    assert replay.status_code == 200
    assert "warnings" not in replay.get_json()
