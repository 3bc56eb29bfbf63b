"""record_chunk for a fused stack: every job's chunk of one flush in one insert and one select."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models import Job
from service.models.base import utcnow
from worker.recording import Claim, _insert_ignoring_duplicates


def record_chunks(
    session: so.Session,
    chunks: list[tuple[Claim, list[float]]],
    first_step: int,
    lease_seconds: float,
) -> list[Claim]:
    """Store each claim's chunk and renew its lease as record_chunk does; the claims to stop."""
    # The job rows first, locked: an attempt that lost its job writes nothing into its record.
    ids = [claim.job_id for claim, _ in chunks]
    jobs = {
        job.id: job
        for job in session.scalars(
            sa.select(Job)
            .where(Job.id.in_(ids))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    stop, owned = [], []
    for claim, losses in chunks:
        job = jobs.get(claim.job_id)
        if job is None or job.worker != claim.worker or job.attempts != claim.attempt:
            claim.notes.append("lost the job to another attempt")
            stop.append(claim)
        elif job.is_terminal:
            claim.notes.append(f"the job already ended as {job.status}")
            stop.append(claim)
        else:
            owned.append((claim, losses, job))
    rows = [
        {"job_id": claim.job_id, "step": first_step + i, "loss": value}
        for claim, losses, _ in owned
        for i, value in enumerate(losses)
    ]
    if rows:
        # Core executemany: the ORM's bulk path costs more per row than the database does.
        session.connection().execute(_insert_ignoring_duplicates(session), rows)
    lease = utcnow() + timedelta(seconds=lease_seconds)
    for claim, losses, job in owned:
        if losses:
            best = min(range(len(losses)), key=losses.__getitem__)
            if claim.best_loss is None or losses[best] < claim.best_loss:
                claim.best_loss, claim.best_step = losses[best], first_step + best
            claim.last_loss = losses[-1]
            claim.steps = first_step + len(losses)
        job.steps_done = claim.steps
        job.final_loss = claim.last_loss
        job.min_loss, job.min_loss_step = claim.best_loss, claim.best_step
        job.lease_expires_at = lease
        if job.cancel_requested:
            stop.append(claim)
    return stop
