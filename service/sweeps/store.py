"""Sweeps in the database: bulk-write a sweep's jobs, read its progress, cancel it."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.jobs import SPEC_COLUMNS
from service.models import TERMINAL_STATES, Job, JobStatus, JobTag, Sweep
from service.models.base import utcnow


def job_rows(
    sweep_id: int,
    specs: list[dict[str, Any]],
    queues: list[str],
    now: datetime,
    owner: str | None = None,
) -> list[dict[str, Any]]:
    """Column dicts for a bulk INSERT of a sweep's jobs (every column given explicitly)."""
    return [
        {
            **{column: spec[name] for name, column in SPEC_COLUMNS.items()},
            "sweep_id": sweep_id,
            "owner": owner,
            "queue": queue,
            "status": JobStatus.QUEUED.value,
            "created_at": now,
            "cancel_requested": False,
            "attempts": 0,
            "steps_done": 0,
        }
        for spec, queue in zip(specs, queues, strict=True)
    ]


def insert_sweep_jobs(
    session: so.Session, sweep: Sweep, specs: list[dict[str, Any]], queues: list[str]
) -> list[tuple[int, str]]:
    """Insert the sweep row, its jobs and their tags in three statements; (job id, queue) each."""
    session.add(sweep)
    session.flush()
    if not specs:  # a search's row alone: its trials come from the controller
        return []
    rows = job_rows(sweep.id, specs, queues, utcnow(), sweep.owner)
    # One executemany, sent as multi-row INSERT ... RETURNING batches. SQLite cannot promise
    # RETURNING in parameter order without a sentinel column, so rows are matched back to
    # their specs by value: rows equal in every column are interchangeable.
    keys = ("queue", *SPEC_COLUMNS.values())
    waiting: dict[tuple, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        waiting[tuple(row[k] for k in keys)].append(index)
    returned = session.execute(
        sa.insert(Job).returning(Job.id, *(getattr(Job, k) for k in keys)), rows
    ).all()
    ids: list[int] = [0] * len(rows)
    for job_id, *values in returned:
        ids[waiting[tuple(values)].pop()] = job_id
    tags = [
        {"job_id": job_id, "tag": tag, "position": i}
        for job_id, spec in zip(ids, specs, strict=True)
        for i, tag in enumerate(spec.get("tags") or [])
    ]
    if tags:
        session.execute(sa.insert(JobTag), tags)
    return sorted(zip(ids, queues, strict=True))


def status_counts(session: so.Session, sweep_ids: list[int]) -> dict[int, dict[str, int]]:
    """Jobs per status for each sweep, from one GROUP BY."""
    counts: dict[int, dict[str, int]] = {sweep_id: {} for sweep_id in sweep_ids}
    if not sweep_ids:
        return counts
    rows = session.execute(
        sa.select(Job.sweep_id, Job.status, sa.func.count())
        .where(Job.sweep_id.in_(sweep_ids))
        .group_by(Job.sweep_id, Job.status)
    ).all()
    for sweep_id, status, n in rows:
        # Job.sweep_id is nullable, but the WHERE above keeps only these sweeps' jobs.
        counts[cast(int, sweep_id)][status] = n
    return counts


def sweep_fields(sweep: Sweep) -> dict[str, Any]:
    """The sweep's own fields, as the API and the export header show them."""
    return {
        "id": sweep.id,
        "name": sweep.name,
        "created_at": sweep.created_at.isoformat() if sweep.created_at else None,
        "seed": sweep.seed,
        "job_count": sweep.job_count,
        "varied": sweep.varied,
        "skipped": sweep.skipped,
        "cancel_requested": sweep.cancel_requested,
        "owner": sweep.owner,
        "request": sweep.request,
    }


def best_trial(session: so.Session, sweep: Sweep) -> dict[str, Any] | None:
    """The sweep's succeeded job of lowest final loss so far: its id, loss and varied fields."""
    job = session.scalars(
        sa.select(Job)
        .where(Job.sweep_id == sweep.id, Job.status == JobStatus.SUCCEEDED.value)
        .order_by(Job.final_loss, Job.id)
        .limit(1)
    ).first()
    if job is None:
        return None
    fields = {
        name: getattr(job, SPEC_COLUMNS[name]) for name in sweep.varied if name in SPEC_COLUMNS
    }
    return {"id": job.id, "final_loss": job.final_loss, "config": fields}


def sweep_to_dict(
    sweep: Sweep, counts: dict[str, int], best: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The sweep as the API shows it, with its progress (and its best trial, when given)."""
    finished = sum(n for status, n in counts.items() if status in TERMINAL_STATES)
    # A search sweep is done once its controller has asked every trial and they have ended.
    asking = (sweep.trials_wanted or 0) > sweep.job_count and not sweep.cancel_requested
    trials = {
        "wanted": sweep.trials_wanted if sweep.trials_wanted is not None else sweep.job_count,
        "asked": sweep.job_count,
        "queued": counts.get(JobStatus.QUEUED.value, 0),
        "running": counts.get(JobStatus.RUNNING.value, 0),
        "finished": finished,
        "pruned": counts.get(JobStatus.PRUNED.value, 0),
        "best": best,
    }
    return {
        **sweep_fields(sweep),
        "counts": {status.value: counts.get(status.value, 0) for status in JobStatus},
        "finished": finished,
        "done": finished == sweep.job_count and not asking,
        "trials": trials,
    }
