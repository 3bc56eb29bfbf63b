"""`fused: auto`'s cost model: forced choices, the GPU rule and the CPU table's answers.

Whether the table agrees with the clock is bench/bench_fusion.py's to measure, not a test's.
"""

from __future__ import annotations

import pytest

from service.dispatch.costs import MAX_BATCH, batch_limit, best_stack, fuses

SMALL = {"stage": "optim", "optimizer": "sgd", "N": 64, "D_in": 32, "H": 32, "D_out": 10}
DEFAULT = {"stage": "optim", "optimizer": "sgd", "N": 64, "D_in": 1000, "H": 100, "D_out": 10}


def fields(dims: dict, **more: object) -> dict:
    return {**dims, "dtype": "float32", "iterations": 500, **more}


@pytest.mark.parametrize("dims", [SMALL, DEFAULT])
def test_true_and_false_force_the_choice(dims: dict) -> None:
    assert fuses(True, fields(dims), "cpu") is True
    assert fuses(False, fields(dims), "cpu") is False
    assert fuses(False, fields(dims), "gpu") is False


def test_auto_fuses_small_jobs_on_the_cpu_and_leaves_the_default_size_alone() -> None:
    assert fuses("auto", fields(SMALL), "cpu")
    assert not fuses("auto", fields(DEFAULT), "cpu")
    # Every stage and optimizer at the small size: the fixed cost per step dominates.
    for stage, optimizer in [("tensors", "sgd"), ("module", "adam"), ("optim", "rmsprop")]:
        assert fuses("auto", fields(SMALL, stage=stage, optimizer=optimizer), "cpu")
    assert not fuses("auto", fields(DEFAULT, dtype="float64"), "cpu")


def test_auto_always_fuses_on_the_gpu_in_the_largest_batches() -> None:
    assert fuses("auto", fields(DEFAULT), "gpu")
    assert batch_limit(fields(DEFAULT), "gpu") == MAX_BATCH["gpu"]


def test_batches_are_the_best_stack_where_fusing_pays_else_the_cap() -> None:
    small, _ = best_stack(fields(SMALL), "cpu")
    middle, speedup = best_stack(fields(SMALL, D_in=128, H=128), "cpu")
    assert 1 < middle < small <= MAX_BATCH["cpu"]  # bigger jobs: smaller stacks stay in cache
    assert speedup > 1
    assert batch_limit(fields(SMALL, D_in=128, H=128), "cpu") == middle
    # `fused: true` at a size where fusing does not pay still sends full batches.
    assert batch_limit(fields(DEFAULT), "cpu") == MAX_BATCH["cpu"]
