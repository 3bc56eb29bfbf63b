"""Whether a sweep's jobs train fused, and in stacks of how many: a cost model per device kind.

The API process never sees a worker's device, so the model is a table per queue, measured
on this project's CPU by `python -m bench.bench_fusion` (bench/RESULTS.md, "Where fusing pays").
A job alone pays a fixed cost per step (Python, autograd, the optimizer's kernels) plus its
matrix products at the rate `mm` reaches while the job sits in cache. A fused stack of K pays
its fixed cost once per step for all K, but `bmm` over (K, in, out) runs slower than `mm`, and
once the stack's working set is past a couple of MiB, the slower the larger the stack: small
jobs gain 10 to 20x, the default size (64 x 1000 x 100 x 10) gains nothing at any K. One
function, `fuses`, decides for the API and the reconciler alike, from fields every job of a
batch shares, so a sweep's lost jobs are re-sent as its first messages were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

FusedChoice = Literal["auto"] | bool

# Jobs per message: enough to amortise launches, few enough that a sweep's batches spread
# over every CPU worker process; a GPU takes far more at once. The worker splits a message
# further to fit its device's memory.
MAX_BATCH = {"cpu": 64, "gpu": 256}
# Fuse only where the model expects a clear gain: near the crossover the measured ratio moves
# with the machine's load, and a job alone also resumes from its checkpoint.
MIN_SPEEDUP = 1.5
# Per-parameter state tensors each optimizer keeps (the worker's stacked optimizers build them).
STATE_SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "rmsprop": 2, "adagrad": 1}
STATE_SLOTS.update(adam=2, adamw=2)
ELEMENT_BYTES = {"float32": 4, "float64": 8}


@dataclass(frozen=True)
class DeviceCosts:
    """Seconds per training step on one kind of device, alone and fused (float32)."""

    alone_overhead: Mapping[str, float]  # per stage: a job's fixed cost of one step (sgd)
    alone_optimizer: Mapping[str, float]  # what the optimizer adds to it
    stack_overhead: Mapping[str, float]  # per optimizer: a stack's fixed cost of one step
    stack_per_job: Mapping[str, float]  # per optimizer: what each job adds to it
    mm_rate: float  # FLOP/s of a job's matrix products alone
    cached_bytes: int  # a stack working set up to which bmm runs at its best rate
    bmm_rates: tuple[tuple[int, float], ...]  # past it: (stack size up to, bmm FLOP/s)


# Measured on the 2-core AMD EPYC CI machine (1 MiB L2 a core, 32 MiB L3), one torch thread,
# `python -m bench.bench_fusion` (bench/RESULTS.md, 2026-12-02): the fixed costs at
# D_in = H = 16, where the matrix work is nil; the rates from 128 x 128 to 1000 x 1000. Past a
# couple of MiB bmm slows with the stack size more than with its bytes (40 GFLOP/s at K = 4
# down to 16 at K = 32, at every size from 128 to 1000), so the best stack of a mid-size job
# is small, and the default job (1.2 MB, 29 MFLOP a step) gains nothing from any.
CPU = DeviceCosts(
    alone_overhead={
        "tensors": 110e-6,
        "autograd": 250e-6,
        "nn": 260e-6,
        "optim": 260e-6,
        "module": 280e-6,
    },
    alone_optimizer={"rmsprop": 30e-6, "adam": 30e-6, "adamw": 30e-6},
    stack_overhead={
        "sgd": 90e-6,
        "momentum": 90e-6,
        "nesterov": 75e-6,
        "adagrad": 75e-6,
        "rmsprop": 115e-6,
        "adam": 175e-6,
        "adamw": 200e-6,
    },
    stack_per_job={
        "sgd": 5e-6,
        "momentum": 7e-6,
        "nesterov": 7e-6,
        "adagrad": 7e-6,
        "rmsprop": 8e-6,
        "adam": 11e-6,
        "adamw": 11e-6,
    },
    mm_rate=50e9,
    cached_bytes=2 * 2**20,
    bmm_rates=((4, 40e9), (8, 30e9), (16, 22e9), (2**31, 16e9)),
)


def matrix_flops(fields: Mapping[str, Any]) -> float:
    """Multiply-add FLOPs of one step: forward, grad of w2, grad of h, grad of w1."""
    n, d_in, h, d_out = fields["N"], fields["D_in"], fields["H"], fields["D_out"]
    return 4 * n * d_in * h + 6 * n * h * d_out


def bytes_per_job(fields: Mapping[str, Any]) -> int:
    """Bytes one job adds to a stack: data, weights, grads, optimizer state, activations."""
    n, d_in, h, d_out = fields["N"], fields["D_in"], fields["H"], fields["D_out"]
    weights = d_in * h + h * d_out
    data = n * (d_in + d_out)
    activations = 4 * n * h + 3 * n * d_out
    elements = data + weights * (2 + STATE_SLOTS[fields["optimizer"]]) + activations
    return ELEMENT_BYTES[fields["dtype"]] * elements


def alone_seconds(fields: Mapping[str, Any], costs: DeviceCosts = CPU) -> float:
    """Estimated seconds of one step of one job trained alone."""
    scale = ELEMENT_BYTES[fields["dtype"]] / 4  # float64 products run at half the rate
    fixed = costs.alone_overhead[fields["stage"]] + costs.alone_optimizer.get(
        fields["optimizer"], 0.0
    )
    return fixed + matrix_flops(fields) * scale / costs.mm_rate


def fused_seconds(fields: Mapping[str, Any], stack: int, costs: DeviceCosts = CPU) -> float:
    """Estimated seconds per job of one step of a fused stack of `stack` such jobs."""
    rate = costs.bmm_rates[0][1]
    if stack * bytes_per_job(fields) > costs.cached_bytes:
        rate = next(rate for most, rate in costs.bmm_rates if stack <= most)
    scale = ELEMENT_BYTES[fields["dtype"]] / 4
    optimizer = fields["optimizer"]
    fixed = costs.stack_overhead[optimizer] / stack + costs.stack_per_job[optimizer]
    return fixed + matrix_flops(fields) * scale / rate


# The fields the model reads: every job of one batch shares them (they are in its fusion key).
MODEL_FIELDS = ("stage", "optimizer", "N", "D_in", "H", "D_out", "dtype")


@lru_cache(maxsize=4096)
def _best_cpu_stack(key: tuple) -> tuple[int, float]:
    fields = dict(zip(MODEL_FIELDS, key, strict=True))
    alone = alone_seconds(fields)
    best = min(range(1, MAX_BATCH["cpu"] + 1), key=lambda k: (fused_seconds(fields, k), -k))
    return best, alone / fused_seconds(fields, best)


def best_stack(fields: Mapping[str, Any], queue: str) -> tuple[int, float]:
    """The stack size the model expects fastest per job on the queue, and its speed-up."""
    if queue == "gpu":
        # On a GPU a lone job of these sizes leaves almost all of the device idle and pays a
        # kernel launch per operation; a stack fills it for the same launches, so the bigger
        # the stack the better, up to its memory (which the worker checks).
        return MAX_BATCH["gpu"], float("inf")
    return _best_cpu_stack(tuple(fields[name] for name in MODEL_FIELDS))


def fuses(request_fused: FusedChoice, fields: Mapping[str, Any], queue: str) -> bool:
    """Whether a job with these fields, of a sweep asking `fused`, trains in a fused stack."""
    if request_fused is True or request_fused is False:
        return request_fused
    return best_stack(fields, queue)[1] >= MIN_SPEEDUP


def batch_limit(fields: Mapping[str, Any], queue: str) -> int:
    """Jobs per batch message: the model's best stack where fusing pays, else the cap."""
    stack, speedup = best_stack(fields, queue)
    limit = MAX_BATCH.get(queue, MAX_BATCH["cpu"])
    return min(limit, stack) if speedup >= MIN_SPEEDUP else limit
