"""How a message's jobs are planned into stacks: by fusion key and resume step, retries alone."""

from __future__ import annotations

from typing import Any

from worker.attempts.planning import QueuedJob, Stack, plan_stacks

FIELDS: dict[str, Any] = {
    "stage": "optim",
    "optimizer": "sgd",
    "init": "normal",
    "lr": 1e-3,
    "iterations": 100,
    "N": 8,
    "D_in": 12,
    "H": 10,
    "D_out": 3,
    "dtype": "float32",
    "device": "auto",
    "seed": 0,
}


def queued(
    attempts: int = 0, step: int = 0, resumes: str | None = None, **fields: Any
) -> QueuedJob:
    return QueuedJob({**FIELDS, **fields}, "cpu", attempts, step, resumes)


def test_a_single_message_trains_alone_unless_its_checkpoint_is_a_stacks() -> None:
    jobs = {1: queued(), 2: queued(step=40, resumes="fused"), 3: queued(step=40, resumes="stage")}
    assert plan_stacks(jobs, fused=False) == [
        Stack([1], fused=False),
        Stack([2], fused=True),
        Stack([3], fused=False),
    ]


def test_a_batch_stacks_by_fusion_key_and_resume_step_up_to_the_cap() -> None:
    jobs = {
        1: queued(),
        2: queued(lr=0.1),
        3: queued(H=11),
        4: queued(step=50, resumes="fused"),
        5: queued(step=50, resumes="fused"),
        6: queued(seed=3),
    }
    assert plan_stacks(jobs, fused=True, max_stack=2) == [
        Stack([1, 2], fused=True, refills=True),
        Stack([6], fused=True, refills=True),
        Stack([3], fused=True, refills=True),
        Stack([4, 5], fused=True, refills=True),
    ]


def test_retried_jobs_and_stage_checkpoints_train_alone_after_the_stacks() -> None:
    jobs = {
        1: queued(attempts=2),
        2: queued(),
        3: queued(step=10, resumes="stage"),
        4: queued(),
        5: queued(attempts=1),
    }
    assert plan_stacks(jobs, fused=True) == [
        Stack([2, 4, 5], fused=True, refills=True),
        # Alone means alone: no queued job of its sweep joins a job that may kill its worker.
        Stack([1], fused=True, refills=False),
        Stack([3], fused=False),
    ]


def test_a_spec_no_stage_can_train_is_planned_alone_to_fail_with_its_error() -> None:
    jobs = {1: queued(), 2: queued(stage="tensors", optimizer="adam"), 3: queued()}
    stacks = plan_stacks(jobs, fused=True)
    assert Stack([1, 3], fused=True, refills=True) in stacks
    assert Stack([2], fused=True, refills=True) in stacks
