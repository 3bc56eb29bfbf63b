"""The benchmarks' jobs: a default sweep, its matrix work, and training it outside the service."""

from __future__ import annotations

import itertools
import time
from typing import Any

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw")
# Rates each optimizer trains with at the default size (hand SGD diverges above ~1e-6 there).
RATES = {"sgd": (1e-7, 3e-7, 1e-6), "momentum": (1e-8, 3e-8, 1e-7), "nesterov": (1e-8, 3e-8, 1e-7)}
RATES.update({name: (1e-4, 3e-4, 1e-3) for name in ("rmsprop", "adagrad", "adam", "adamw")})
DEFAULT_DIMS = {"N": 64, "D_in": 1000, "H": 100, "D_out": 10}


def sweep_fields(count: int, dims: dict[str, int] | None = None, **base: Any) -> list[dict]:
    """count jobs of stage optim over optimizer x lr x seeds, in that order, seeds last."""
    dims = dims or DEFAULT_DIMS
    jobs = []
    for seed in itertools.count():
        for optimizer in OPTIMIZERS:
            for lr in RATES[optimizer]:
                jobs.append({"stage": "optim", "optimizer": optimizer, "lr": lr, "seed": seed,
                             "iterations": 500, **dims, **base})  # fmt: skip
                if len(jobs) == count:
                    return jobs
    raise AssertionError("unreachable")


def matrix_flops(fields: dict, steps: int) -> float:
    """Multiply-add FLOPs of steps iterations: forward, grad of w2, grad of h, grad of w1."""
    n, d_in, h, d_out = fields["N"], fields["D_in"], fields["H"], fields["D_out"]
    return steps * (4 * n * d_in * h + 6 * n * h * d_out)


def one_core_matmul_rate(fields: dict, seconds: float = 1.0) -> float:
    """FLOP/s of one thread on the job's five matrix products, measured now."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n, d_in, h, d_out = fields["N"], fields["D_in"], fields["H"], fields["D_out"]
        x, w1, w2 = torch.randn(n, d_in), torch.randn(d_in, h), torch.randn(h, d_out)
        hidden, grad_y = torch.randn(n, h), torch.randn(n, d_out)

        def one_step() -> None:
            x.mm(w1), hidden.mm(w2), hidden.t().mm(grad_y), grad_y.mm(w2.t()), x.t().mm(hidden)

        for _ in range(20):
            one_step()
        rates = []
        for _ in range(5):
            steps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / 5:
                one_step()
                steps += 1
            rates.append(matrix_flops(fields, steps) / (time.perf_counter() - start))
        return max(rates)  # the machine's rate when least disturbed
    finally:
        torch.set_num_threads(threads)


def train_alone(fields: dict) -> int:
    """Train one job in this process (1 thread) without queue or database; steps stored."""
    import torch

    from service.jobspec import validate_job
    from worker.training import TrainSpec, train_to_list

    torch.set_num_threads(1)
    return len(train_to_list(TrainSpec.from_fields(validate_job(fields))).losses)
