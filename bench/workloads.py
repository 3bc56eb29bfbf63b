"""The benchmarks' jobs: a default sweep, its matrix work, and training it outside the service."""

from __future__ import annotations

import time
from typing import Any

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw")
# One learning-rate grid for every optimizer, low enough that none diverges at the default size
# or at D_in = H = 32 (momentum and nesterov do from 3e-6): every job trains all its iterations,
# so a sweep's work is its job count x iterations.
RATES = (1e-8, 1e-7, 1e-6)
DEFAULT_DIMS = {"N": 64, "D_in": 1000, "H": 100, "D_out": 10}


def sweep_request(
    count: int,
    dims: dict[str, int] | None = None,
    name: str = "bench",
    optimizers: tuple[str, ...] = OPTIMIZERS,
    rates: tuple[float, ...] = RATES,
    **base: Any,
) -> dict[str, Any]:
    """A POST /api/v1/sweeps body: grid optimizer x lr x seeds, count rounded up to a whole grid."""
    seeds = max(1, -(-count // (len(optimizers) * len(rates))))
    return {
        "name": name,
        "base": {"stage": "optim", "iterations": 500, **(dims or DEFAULT_DIMS), **base},
        "grid": {"optimizer": list(optimizers), "lr": list(rates)},
        "seeds": list(range(seeds)),
    }


def sweep_fields(request: dict[str, Any]) -> list[dict]:
    """The jobs the service expands the request to, for the runs outside the service."""
    from service.sweeps.expansion import expand
    from service.sweeps.request import validate_sweep

    return expand(validate_sweep(request)).jobs


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


def _matmul_rate_after(barrier: Any, fields: dict, seconds: float) -> float:
    """one_core_matmul_rate in a pool process, started with the others at the barrier."""
    import torch

    torch.set_num_threads(1)
    one_core_matmul_rate(fields, seconds=0.2)  # torch loaded and warm before the start
    barrier.wait()
    return one_core_matmul_rate(fields, seconds)


def all_cores_matmul_rate(fields: dict, cores: int, seconds: float = 2.0) -> float:
    """FLOP/s of the job's matrix products with one single-thread process per core at once.

    Where cores share caches, memory bandwidth or a clock budget, this is below cores x the
    one-core rate: it is the most any set of one-thread workers can get from the machine.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(cores) as pool:
        barrier = manager.Barrier(cores)
        rates = pool.starmap(_matmul_rate_after, [(barrier, fields, seconds)] * cores)
    return sum(rates)


def train_alone(fields: dict) -> int:
    """Train one job in this process (1 thread) without queue or database; steps stored.

    On the device the job names, as a worker would: a `device: cuda` job trains on the GPU.
    """
    import torch

    from service.jobspec import validate_job
    from worker.training import TrainSpec, train_to_list

    torch.set_num_threads(1)
    spec_fields = validate_job(fields)
    device = torch.device("cuda" if spec_fields["device"] == "cuda" else "cpu")
    # The last flush copies the losses back to the host, so the time includes the GPU's work.
    return len(train_to_list(TrainSpec.from_fields(spec_fields), device).losses)
