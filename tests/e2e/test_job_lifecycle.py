"""One job's whole path: HTTP -> SQL row -> Redis -> a real Celery worker -> loss rows -> HTTP."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa
import torch

from service.models import Job
from tests.conftest import Stack
from tests.support.loss_chunks import stored_steps

STAGES = ("tensors", "autograd", "nn", "optim", "module")


def seed_program_one(seed: int, iterations: int = 500) -> list[float]:
    """The seed's first program (hand-written tensors), run after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    x = torch.randn(64, 1000)
    y = torch.randn(64, 10)
    w1 = torch.randn(1000, 100)
    w2 = torch.randn(100, 10)
    losses = []
    for _ in range(iterations):
        h = x.mm(w1)
        h_relu = h.clamp(min=0)
        y_pred = h_relu.mm(w2)
        losses.append((y_pred - y).pow(2).sum().item())
        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h_relu.t().mm(grad_y_pred)
        grad_h = grad_y_pred.mm(w2.t()).clone()
        grad_h[h < 0] = 0
        grad_w1 = x.t().mm(grad_h)
        w1 -= 1e-6 * grad_w1
        w2 -= 1e-6 * grad_w2
    return losses


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_with_defaults_stores_500_steps(stack: Stack, stage: str) -> None:
    job = stack.wait(stack.submit(stage=stage, seed=7)["id"])
    assert job["status"] == "succeeded", job
    assert job["steps_done"] == 500
    assert job["attempts"] == 1
    assert job["ran_on"] == "cpu"
    assert job["torch_version"] == torch.__version__
    assert job["stack_size"] == 1  # trained alone
    assert job["worker"].startswith("cpu@")
    assert job["started_at"] <= job["finished_at"]
    history = stack.losses(job["id"])
    assert history["steps"] == list(range(500))
    assert job["final_loss"] == history["losses"][-1]
    assert job["min_loss"] == min(history["losses"])
    assert history["losses"][job["min_loss_step"]] == job["min_loss"]
    # Exactly one stored value per step in the table itself.
    with stack.sessions() as session:
        assert stored_steps(session, job["id"]) == list(range(500))


def test_tensors_over_http_reproduces_the_seed_program_bit_for_bit(stack: Stack) -> None:
    job = stack.wait(stack.submit(stage="tensors", seed=12345)["id"])
    assert stack.losses(job["id"])["losses"] == seed_program_one(12345)


def test_stages_agree_over_http(stack: Stack) -> None:
    ids = {
        stage: stack.submit(stage=stage, seed=99, optimizer="sgd", init="normal", lr=1e-6)["id"]
        for stage in ("tensors", "autograd", "nn", "optim")
    }
    histories = {
        stage: stack.losses(stack.wait(job_id)["id"])["losses"] for stage, job_id in ids.items()
    }
    reference = histories["tensors"]
    for stage, losses in histories.items():
        assert len(losses) == 500
        for step in range(100):
            assert abs(losses[step] - reference[step]) <= 1e-4 * abs(reference[step]), (stage, step)
        assert abs(losses[-1] - reference[-1]) <= 0.05 * abs(reference[-1]), stage


def test_module_and_optim_agree_for_adam_over_http(stack: Stack) -> None:
    fields = {"seed": 5, "optimizer": "adam", "init": "default", "lr": 1e-4, "iterations": 200}
    module = stack.wait(stack.submit(stage="module", **fields)["id"])
    optim = stack.wait(stack.submit(stage="optim", **fields)["id"])
    a, b = stack.losses(module["id"])["losses"], stack.losses(optim["id"])["losses"]
    assert all(abs(x - y) <= 1e-4 * abs(y) for x, y in zip(a[:100], b[:100], strict=True))
    assert abs(a[-1] - b[-1]) <= 0.05 * abs(b[-1])


def test_divergence_is_an_outcome_with_history_kept(stack: Stack) -> None:
    job = stack.wait(stack.submit(stage="optim", optimizer="sgd", lr=10.0, seed=3)["id"])
    assert job["status"] == "diverged"
    assert job["error"] is None
    history = stack.losses(job["id"])
    assert job["diverged_at"] == len(history["steps"]) == job["steps_done"]
    assert history["steps"] == list(range(job["diverged_at"]))
    assert all(math.isfinite(v) for v in history["losses"])


def test_losses_are_readable_while_the_job_trains(stack: Stack) -> None:
    job_id = stack.submit(stage="optim", iterations=60_000, N=8, D_in=16, H=8, D_out=4, seed=1)[
        "id"
    ]
    running = stack.wait(job_id, until=lambda j: j["status"] == "running" and j["steps_done"] > 0)
    first = stack.losses(job_id)["steps"]
    later = stack.wait(job_id, until=lambda j: j["steps_done"] > len(first) + 100)
    assert running["status"] == "running"
    assert first == list(range(len(first)))
    assert 0 < len(first) < 60_000
    assert later["steps_done"] > len(first)
    stack.client.post(f"/api/v1/jobs/{job_id}/cancel")
    stack.wait(job_id)


def test_cancel_running_job_stops_it_promptly(stack: Stack) -> None:
    job_id = stack.submit(stage="optim", iterations=100_000, N=8, D_in=16, H=8, D_out=4, seed=2)[
        "id"
    ]
    stack.wait(job_id, until=lambda j: j["status"] == "running" and j["steps_done"] > 0)
    response = stack.client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    job = stack.wait(job_id, timeout=30)
    assert job["status"] == "cancelled"
    assert 0 < job["steps_done"] < 100_000
    history = stack.losses(job_id)
    assert history["steps"] == list(range(job["steps_done"]))


def test_failed_job_records_the_error(stack: Stack) -> None:
    # No CUDA on a CPU worker: the job must fail with the reason, not vanish or crash the worker.
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the failure path needs a CPU-only worker")
    job = stack.submit(stage="nn", device="cuda")
    # CUDA jobs go to the gpu queue, which this stack's worker does not serve: move it by hand.
    with stack.sessions() as session:
        session.execute(
            sa.update(Job).where(Job.id == job["id"]).values(device="cuda", queue="cpu")
        )
        session.commit()
    from service.broker import enqueue_jobs

    enqueue_jobs(stack.app.extensions["trainq.celery"], [(job["id"], "cpu")])
    done = stack.wait(job["id"])
    assert done["status"] == "failed"
    assert "CUDA" in done["error"]
    assert done["finished_at"] is not None


def test_health_reports_the_live_worker(stack: Stack) -> None:
    body = stack.client.get("/health").get_json()
    assert body["status"] == "ok"
    assert body["workers"]["cpu"] == ["cpu@" + body["workers"]["cpu"][0].split("@", 1)[1]]
