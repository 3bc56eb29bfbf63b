"""The reads behind the web pages: recent jobs, sweep progress, a sweep factor's value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.jobs import SPEC_COLUMNS
from service.models import TERMINAL_STATES, Job, Sweep
from service.sweeps.store import status_counts


@dataclass
class SweepProgress:
    """A sweep with how many of its jobs are in each state and its best final loss."""

    sweep: Sweep
    counts: dict[str, int] = field(default_factory=dict)
    best_loss: float | None = None

    @property
    def finished(self) -> int:
        """Jobs in a terminal state."""
        return sum(n for status, n in self.counts.items() if status in TERMINAL_STATES)


def recent_jobs(session: so.Session, limit: int) -> list[Job]:
    """The newest jobs, newest first (the order the jobs API's default sort uses)."""
    query = sa.select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return list(session.scalars(query))


def sweep_progress(session: so.Session, sweeps: list[Sweep]) -> list[SweepProgress]:
    """Per-status job counts and the best final loss of each sweep, in two grouped queries."""
    rows = {sweep.id: SweepProgress(sweep) for sweep in sweeps}
    if not rows:
        return []
    ids = list(rows)
    for sweep_id, counts in status_counts(session, ids).items():
        rows[sweep_id].counts = dict(counts)
    best = session.execute(
        sa.select(Job.sweep_id, sa.func.min(Job.final_loss))
        .where(Job.sweep_id.in_(ids))
        .group_by(Job.sweep_id)
    )
    for job_sweep_id, loss in best:
        # Job.sweep_id is nullable, but the WHERE above keeps only these sweeps' jobs.
        rows[cast(int, job_sweep_id)].best_loss = loss
    return list(rows.values())


def recent_sweeps(session: so.Session, limit: int) -> list[SweepProgress]:
    """The newest sweeps with their progress, newest first."""
    query = sa.select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit)
    return sweep_progress(session, list(session.scalars(query)))


def factor_value(job: Job, name: str) -> Any:
    """A job's value of a sweep factor named as the API names it (`lr`, `N`, ...)."""
    return getattr(job, SPEC_COLUMNS.get(name, name), None)
