"""Group queued jobs that can train as one fused stack into batch messages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.choices import FUSION_FIELDS, fusion_key
from service.dispatch.costs import batch_limit, fuses
from service.jobs import SPEC_COLUMNS
from service.models import Job, Sweep
from service.sweeps.policy import SweepPolicy


def batch_key(fields: Mapping[str, Any], queue: str) -> tuple:
    """What the jobs of one batch message share: queue, device and fusion key."""
    return (queue, fields["device"], *fusion_key(fields))


def fields_of(job: Job) -> dict[str, Any]:
    """The job's fields (API names) that decide its batch: the fusion key and the device."""
    return {name: getattr(job, SPEC_COLUMNS[name]) for name in (*FUSION_FIELDS, "device")}


def plan_batches(jobs: Iterable[Job], max_batch: int | None = None) -> list[tuple[str, list[int]]]:
    """(queue, job ids) batches of compatible jobs, each group split into near-equal batches
    of at most max_batch, or of the stack the cost model expects fastest on the queue."""
    if max_batch is not None and max_batch < 1:
        raise ValueError("max_batch must be positive")
    groups: dict[tuple, list[int]] = defaultdict(list)
    shared: dict[tuple, dict[str, Any]] = {}
    for job in jobs:
        fields = fields_of(job)
        key = batch_key(fields, job.queue)
        groups[key].append(job.id)
        shared.setdefault(key, fields)
    batches: list[tuple[str, list[int]]] = []
    for key, ids in groups.items():
        ids.sort()
        limit = max_batch or batch_limit(shared[key], key[0])
        count = -(-len(ids) // limit)
        # Near-equal sizes so no batch is a straggler holding one worker after the rest finish.
        bounds = [len(ids) * i // count for i in range(count + 1)]
        batches.extend((key[0], ids[lo:hi]) for lo, hi in pairwise(bounds))
    return batches


def split_fused(
    session: so.Session, jobs: list[tuple[int, str]]
) -> tuple[list[tuple[int, str]], list[tuple[str, list[int]]]]:
    """The (job id, queue) to send singly, and (queue, job ids) batches of fused sweeps' jobs."""
    ids = [job_id for job_id, _ in jobs]
    if not ids:
        return [], []
    sweep_ids = session.scalars(
        sa.select(Job.sweep_id).where(Job.id.in_(ids), Job.sweep_id.is_not(None)).distinct()
    ).all()
    if not sweep_ids:
        return jobs, []
    # What each sweep asked for, decided per job by the rule that planned its first messages.
    asked = {
        sweep_id: SweepPolicy.of(request).fused
        for sweep_id, request in session.execute(
            sa.select(Sweep.id, Sweep.request).where(Sweep.id.in_(sweep_ids))
        )
    }
    candidates = session.scalars(
        sa.select(Job)
        .where(Job.id.in_(ids), Job.sweep_id.in_(list(asked)))
        .order_by(Job.id)
        .options(so.lazyload(Job.tag_rows))  # batches need no tags: no query for them
    ).all()
    fused_jobs = [
        job for job in candidates if fuses(asked[job.sweep_id], fields_of(job), job.queue)
    ]
    if not fused_jobs:
        return jobs, []
    in_batches = {job.id for job in fused_jobs}
    singles = [(job_id, queue) for job_id, queue in jobs if job_id not in in_batches]
    return singles, plan_batches(fused_jobs)
