"""Planning: which of a message's jobs train together, in which order, fused or alone."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.dispatch.fusing import batch_key
from service.jobs import job_spec
from service.models import Checkpoint, Job
from worker.attempts.devices import resolve_device
from worker.training import TrainSpec
from worker.training.batch_size import MAX_FUSED, fused_batch_size
from worker.training.checkpoints import is_stacked


@dataclass(frozen=True)
class QueuedJob:
    """What planning needs of a job: its spec, queue, attempts so far and checkpoint."""

    fields: dict[str, Any]
    queue: str
    attempts: int
    resume_step: int
    # How its checkpoint resumes: "fused", "stage", or None without one.
    resumes: str | None


@dataclass(frozen=True)
class Stack:
    """Jobs to train together: fused (one or more), or one alone in its stage."""

    job_ids: list[int]
    fused: bool
    # Whether rows its jobs leave take queued jobs of their sweep (not for a job kept alone).
    refills: bool = False


def read_jobs(session: so.Session, job_ids: Sequence[int]) -> dict[int, QueuedJob]:
    """The planning facts of each job that exists."""
    jobs = session.scalars(sa.select(Job).where(Job.id.in_(job_ids)).order_by(Job.id)).all()
    checkpoints = {
        row.job_id: (row.step, row.layout)
        for row in session.execute(
            sa.select(Checkpoint.job_id, Checkpoint.step, Checkpoint.layout).where(
                Checkpoint.job_id.in_(job_ids)
            )
        )
    }
    queued = {}
    for job in jobs:
        step, layout = checkpoints.get(job.id, (0, None))
        resumes = None if layout is None else ("fused" if is_stacked(layout) else "stage")
        queued[job.id] = QueuedJob(job_spec(job), job.queue, job.attempts, step, resumes)
    return queued


def plan_stacks(
    queued: dict[int, QueuedJob], *, fused: bool, max_stack: int = MAX_FUSED
) -> list[Stack]:
    """The stacks to train, in order.

    A job resumes the way its checkpoint was written (fused rows fused, a stage's alone). In a
    batch, jobs that share a fusion key and a resume step stack, up to the device's size; a
    job already retried (its stack died twice) trains alone, last, so a job that kills its
    worker takes no stack-mate's attempts with it.
    """
    if not fused:
        return [Stack([job_id], fused=job.resumes == "fused") for job_id, job in queued.items()]
    groups: dict[tuple, list[int]] = defaultdict(list)
    alone: list[Stack] = []
    for job_id, job in queued.items():
        if job.resumes == "stage":
            alone.append(Stack([job_id], fused=False))
            continue
        if job.attempts >= 2:
            alone.append(Stack([job_id], fused=True))
            continue
        try:
            TrainSpec.from_fields(job.fields)  # refuses a spec no stage can train
            key = (*batch_key(job.fields, job.queue), job.resume_step)
        except ValueError:
            key = ("unfusable", job_id)  # fails alone, when claimed, with its own error
        groups[key].append(job_id)
    stacks: list[Stack] = []
    for members in groups.values():
        first = queued[members[0]]
        size = len(members)
        # On a bad spec or a missing device training records the error against each job.
        with contextlib.suppress(ValueError, RuntimeError):
            size = fused_batch_size(
                TrainSpec.from_fields(first.fields),
                resolve_device(first.fields["device"], first.queue),
                cap=max_stack,
            )
        stacks.extend(
            Stack(members[start : start + size], fused=True, refills=True)
            for start in range(0, len(members), size)
        )
    return stacks + alone
