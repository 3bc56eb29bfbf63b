"""record_chunk for a fused stack: every job's chunk of one flush in one select and one insert."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.loss_store import store_chunks
from service.models import Job
from service.models.base import utcnow
from worker.recording import Claim


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
    store_chunks(session, [(claim.job_id, first_step, losses) for claim, losses, _ in owned])
    lease = utcnow() + timedelta(seconds=lease_seconds)
    for claim, losses, job in owned:
        claim.take(first_step, losses)
        job.steps_done = claim.steps
        job.final_loss = claim.last_loss
        job.min_loss, job.min_loss_step = claim.best_loss, claim.best_step
        job.lease_expires_at = lease
        if job.cancel_requested:
            stop.append(claim)
    return stop
