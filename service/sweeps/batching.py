"""Group queued jobs that can train as one fused stack into batch messages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

from service.choices import FUSION_FIELDS, fusion_key
from service.jobs import SPEC_COLUMNS
from service.models import Job

# Jobs per message: enough to amortise launches, few enough that a sweep's batches spread
# over every CPU worker process; a GPU takes far more at once. The worker splits a message
# further to fit its device's memory.
MAX_BATCH = {"cpu": 64, "gpu": 256}


def batch_key(fields: Mapping[str, Any], queue: str) -> tuple:
    """What the jobs of one batch message share: queue, device and fusion key."""
    return (queue, fields["device"], *fusion_key(fields))


def _batch_key_of(job: Job) -> tuple:
    fields = {name: getattr(job, SPEC_COLUMNS[name]) for name in (*FUSION_FIELDS, "device")}
    return batch_key(fields, job.queue)


def plan_batches(jobs: Iterable[Job], max_batch: int | None = None) -> list[tuple[str, list[int]]]:
    """(queue, job ids) batches of compatible jobs, each group split into near-equal batches."""
    if max_batch is not None and max_batch < 1:
        raise ValueError("max_batch must be positive")
    groups: dict[tuple, list[int]] = defaultdict(list)
    for job in jobs:
        groups[_batch_key_of(job)].append(job.id)
    batches: list[tuple[str, list[int]]] = []
    for key, ids in groups.items():
        ids.sort()
        limit = max_batch or MAX_BATCH.get(key[0], MAX_BATCH["cpu"])
        count = -(-len(ids) // limit)
        # Near-equal sizes so no batch is a straggler holding one worker after the rest finish.
        bounds = [len(ids) * i // count for i in range(count + 1)]
        batches.extend((key[0], ids[lo:hi]) for lo, hi in pairwise(bounds))
    return batches
