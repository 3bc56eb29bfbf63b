"""The objective every contender trains: trainq's own training function, reporting as it goes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bench.search.space import DATA_SEED, ITERATIONS


def job_fields(dims: dict[str, int], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's job fields, every default filled as the service fills them."""
    from service.jobspec import validate_job

    fields = {"stage": "optim", "iterations": ITERATIONS, **dims, "seed": DATA_SEED, **params}
    return validate_job(fields)


def train_reporting(
    fields: dict[str, Any], every: int, report: Callable[[int, float], bool]
) -> tuple[int, float | None, bool]:
    """Train with trainq's training function, calling report(steps, loss) every `every` steps
    (False: stop); (steps trained, final loss if it trained to the end, diverged)."""
    import torch

    from worker.training import FlushPolicy, LossBuffer, TrainSpec, train

    spec = TrainSpec.from_fields(fields)
    trained = [0, math.nan]

    def flush(first: int, chunk: list[float]) -> bool:
        trained[:] = [first + len(chunk), chunk[-1]]
        return report(first + len(chunk), chunk[-1])

    device = torch.device("cpu")
    buffer = LossBuffer(spec.iterations, device, flush, FlushPolicy(every=every, seconds=1e9))
    train(spec, device, buffer)
    steps, last = int(trained[0]), float(trained[1])
    if buffer.diverged_at is not None:
        return buffer.diverged_at, None, True
    return steps, (last if steps == spec.iterations else None), False


def full_final(fields: dict[str, Any]) -> float:
    """The final loss of a configuration trained to its end (math.inf: diverged)."""
    import torch

    from worker.training import TrainSpec, train_to_list

    torch.set_num_threads(1)
    result = train_to_list(TrainSpec.from_fields(fields))
    return math.inf if result.diverged_at is not None else result.losses[-1]
