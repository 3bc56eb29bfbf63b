"""Jobs in the database: create from a validated spec, read back as the API shows them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.loss_store import read_history
from service.models import Job, JobTag

# API field name -> column name, for the fields a job is submitted with.
SPEC_COLUMNS = {
    "stage": "stage",
    "optimizer": "optimizer",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "init": "init",
    "lr": "lr",
    "iterations": "iterations",
    "N": "n",
    "D_in": "d_in",
    "H": "h",
    "D_out": "d_out",
    "seed": "seed",
    "device": "device",
    "dtype": "dtype",
    "name": "name",
}
STATE_COLUMNS = (
    "status",
    "queue",
    "sweep_id",
    "owner",
    "attempts",
    "stack_size",
    "worker",
    "ran_on",
    "torch_version",
    "error",
    "steps_done",
    "final_loss",
    "min_loss",
    "min_loss_step",
    "diverged_at",
    "pruned_at",
    "pruned_loss",
    "cancel_requested",
)
TIME_COLUMNS = ("created_at", "enqueued_at", "started_at", "finished_at")


def queue_for(device: str, default_queue: str) -> str:
    """The Celery queue that serves a requested device."""
    if device == "cuda":
        return "gpu"
    if device == "cpu":
        return "cpu"
    return default_queue


def new_job(spec: dict[str, Any], queue: str, **extra: Any) -> Job:
    """A job row (not yet added) for a validated spec."""
    job = Job(
        **{column: spec[field] for field, column in SPEC_COLUMNS.items()},
        queue=queue,
        status="queued",
        **extra,
    )
    job.tag_rows = [JobTag(tag=tag, position=i) for i, tag in enumerate(spec.get("tags", []))]
    return job


def job_spec(job: Job) -> dict[str, Any]:
    """The job's training fields, under the API's names."""
    spec = {field: getattr(job, column) for field, column in SPEC_COLUMNS.items()}
    spec["tags"] = job.tags
    return spec


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def job_to_dict(job: Job) -> dict[str, Any]:
    """The job as the API returns it: every field, defaults filled in, and its state."""
    data: dict[str, Any] = {"id": job.id}
    data.update(job_spec(job))
    data.update({column: getattr(job, column) for column in STATE_COLUMNS})
    data.update({column: _iso(getattr(job, column)) for column in TIME_COLUMNS})
    if job.started_at and job.finished_at:
        data["duration_s"] = (job.finished_at - job.started_at).total_seconds()
    else:
        data["duration_s"] = None
    return data


def get_job(session: so.Session, job_id: int) -> Job | None:
    """One job by id, or None."""
    return session.get(Job, job_id)


def read_losses(
    session: so.Session, job_id: int, start: int | None = None, stop: int | None = None
) -> tuple[list[int], list[float]]:
    """A job's stored history between start (inclusive) and stop (exclusive), in step order."""
    steps, losses = read_history(session, job_id, start, stop)
    return steps.tolist(), losses.tolist()


def downsample(steps: Sequence[int], losses: Sequence[float], points: int) -> tuple[list, list]:
    """At most `points` samples keeping the first and last step and each bucket's min and max."""
    count = len(steps)
    if points <= 0 or count <= points:
        return list(steps), list(losses)
    if points < 3:
        keep = [0, count - 1][:points] if points == 2 else [count - 1]
        return [steps[i] for i in keep], [losses[i] for i in keep]
    # Interior buckets each contribute their extremes, so spikes and the floor of the
    # curve survive; the first and last step are always kept.
    inner = points - 2
    buckets = max(1, inner // 2)
    chosen = {0, count - 1}
    span = (count - 2) / buckets
    for b in range(buckets):
        lo = 1 + int(b * span)
        hi = 1 + int((b + 1) * span) if b < buckets - 1 else count - 1
        if lo >= hi:
            continue
        window = range(lo, hi)
        chosen.add(min(window, key=losses.__getitem__))
        if len(chosen) < points:
            chosen.add(max(window, key=losses.__getitem__))
    keep = sorted(chosen)[:points] if len(chosen) > points else sorted(chosen)
    if keep[-1] != count - 1:
        keep[-1] = count - 1
    return [steps[i] for i in keep], [losses[i] for i in keep]


def tags_filter(tags: Iterable[str]) -> sa.ColumnElement[bool]:
    """Jobs carrying every one of the tags."""
    clauses = [Job.id.in_(sa.select(JobTag.job_id).where(JobTag.tag == tag)) for tag in tags]
    return sa.and_(*clauses)
