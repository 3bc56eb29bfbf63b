"""Group queued jobs that can train as one fused stack into batch messages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from service.models import Job

# Jobs per message: enough to amortise launches, few enough that a sweep's batches spread
# over every worker process (the worker splits a message further to fit its device).
MAX_BATCH = 64


def fusion_group(job: Job) -> tuple:
    """What fused jobs share: queue, stage, sizes, iterations, dtype, device, optimizer."""
    return (job.queue, job.stage, job.n, job.d_in, job.h, job.d_out, job.iterations, job.dtype,
            job.device, job.optimizer)  # fmt: skip


def plan_batches(jobs: Iterable[Job], max_batch: int = MAX_BATCH) -> list[tuple[str, list[int]]]:
    """(queue, job ids) batches of compatible jobs, each group split into near-equal batches."""
    if max_batch < 1:
        raise ValueError("max_batch must be positive")
    groups: dict[tuple, list[int]] = defaultdict(list)
    for job in jobs:
        groups[fusion_group(job)].append(job.id)
    batches = []
    for key, ids in groups.items():
        ids.sort()
        count = -(-len(ids) // max_batch)
        # Near-equal sizes so no batch is a straggler holding one worker after the rest finish.
        bounds = [len(ids) * i // count for i in range(count + 1)]
        batches.extend((key[0], ids[lo:hi]) for lo, hi in zip(bounds, bounds[1:], strict=False))
    return batches
