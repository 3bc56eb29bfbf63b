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
    rows = [
        {"job_id": claim.job_id, "step": first_step + i, "loss": value}
        for claim, losses in chunks
        for i, value in enumerate(losses)
    ]
    if rows:
        # Core executemany: the ORM's bulk path costs more per row than the database does.
        session.connection().execute(_insert_ignoring_duplicates(session), rows)
    for claim, losses in chunks:
        if not losses:
            continue
        best = min(range(len(losses)), key=losses.__getitem__)
        if claim.best_loss is None or losses[best] < claim.best_loss:
            claim.best_loss, claim.best_step = losses[best], first_step + best
        claim.last_loss = losses[-1]
        claim.steps = first_step + len(losses)
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
    lease = utcnow() + timedelta(seconds=lease_seconds)
    stop = []
    for claim, _ in chunks:
        job = jobs.get(claim.job_id)
        if job is None or job.worker != claim.worker or job.attempts != claim.attempt:
            claim.notes.append("lost the job to another attempt")
            stop.append(claim)
            continue
        job.steps_done = claim.steps
        job.final_loss = claim.last_loss
        job.min_loss, job.min_loss_step = claim.best_loss, claim.best_step
        job.lease_expires_at = lease
        if job.cancel_requested:
            stop.append(claim)
    return stop
