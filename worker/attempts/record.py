"""The record of a claim in the database: loss chunks with lease renewals, checkpoints, the end.

Every write checks that the attempt still owns its job (`job_states.held`): an attempt that
lost its lease writes nothing into the record.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy.orm as so

from service import job_states
from service.loss_store import store_chunks
from service.models import Checkpoint, Job
from service.models.base import utcnow
from service.sweeps.early_stop import Ended, StepLosses, decide, ended_at_steps, median_step
from worker.attempts.claims import Claim


def save_checkpoints(session: so.Session, states: Sequence[tuple[Claim, int, bytes, dict]]) -> int:
    """Store each job's state to resume from at its step, where its attempt still holds it."""
    jobs = job_states.held(session, [claim for claim, *_ in states])
    saved = [state for state in states if state[0].job_id in jobs]
    for claim, step, blob, layout in saved:
        checkpoint = session.get(Checkpoint, claim.job_id) or Checkpoint(job_id=claim.job_id)
        checkpoint.step, checkpoint.attempt, checkpoint.created_at = step, claim.attempt, utcnow()
        checkpoint.tensors, checkpoint.layout = blob, layout
        session.add(checkpoint)
    return len(saved)


def record_chunk(
    session: so.Session, claim: Claim, first_step: int, losses: list[float], lease_seconds: float
) -> bool:
    """Store a chunk of losses and renew the lease; False when the job should stop."""
    return not record_chunks(session, [(claim, first_step, losses)], lease_seconds)


def median_reads(session: so.Session, chunks: Sequence[tuple[Claim, int, list[float]]]) -> Ended:
    """What this flush's median decisions will read of their sweeps, read before its write.

    A read of every ended job of a sweep, in its own transaction: the write transaction that
    locks the stack's rows (on SQLite, the one write lock) is not held while it runs.
    """
    steps = [
        (claim.sweep_id, step)
        for claim, first, losses in chunks
        if (step := median_step(claim.early_stop, claim.sweep_id, first, len(losses))) is not None
        and claim.sweep_id is not None
    ]
    return ended_at_steps(session, steps) if steps else {}


def record_chunks(
    session: so.Session,
    chunks: Sequence[tuple[Claim, int, list[float]]],
    lease_seconds: float,
    ended: Ended | None = None,
) -> list[Claim]:
    """Store each claim's chunk (from its first step) of one flush and renew its lease; the
    claims that must stop.

    A job its sweep's early-stopping rule stops at this flush ends pruned here (see early_stop),
    from `ended` where `median_reads` read it before.
    """
    # The job rows first, locked: an attempt that lost its job writes nothing into its record.
    jobs = job_states.held(session, [claim for claim, _, _ in chunks])
    owned = [
        (claim, first, losses, jobs[claim.job_id])
        for claim, first, losses in chunks
        if claim.job_id in jobs
    ]
    store_chunks(session, [(claim.job_id, first, losses) for claim, first, losses, _ in owned])
    job_states.renew(session, [job for *_, job in owned], lease_seconds)
    reads = StepLosses(session, ended)
    for claim, first_step, losses, job in owned:
        claim.take(first_step, losses)
        claim.write_summary(job)
        if claim.early_stop is not None:
            stop = decide(reads, claim.early_stop, job, first_step, losses)
            if stop is not None:
                job_states.prune(session, job, *stop)
    return [
        claim
        for claim, _, _ in chunks
        if claim.job_id not in jobs
        or jobs[claim.job_id].cancel_requested
        or jobs[claim.job_id].is_terminal
    ]


def finish_job(
    session: so.Session,
    claim: Claim,
    status: str,
    *,
    ran_on: str | None = None,
    torch_version: str | None = None,
    diverged_at: int | None = None,
    error: str | None = None,
) -> bool:
    """Write the job's one terminal state with its summary, unless another attempt owns it."""
    job = job_states.finish(session, claim, status, error)
    if job is None:
        return False
    claim.write_summary(job)
    job.diverged_at = diverged_at
    if ran_on is not None:
        job.ran_on = ran_on
    if torch_version is not None:
        job.torch_version = torch_version
    return True


def mark_started_on(
    session: so.Session, claims: Sequence[Claim], ran_on: str, torch_version: str
) -> None:
    """Record the device and torch version the attempts really use."""
    for claim in claims:
        job = session.get(Job, claim.job_id)
        if job_states.owns(job, claim):
            job.ran_on, job.torch_version = ran_on, torch_version


def hand_back(session: so.Session, claim: Claim) -> bool:
    """Queue the job again from its checkpoint, with the summary of what is stored."""
    job = job_states.hand_back(session, claim)
    if job is None:
        return False
    claim.write_summary(job)
    return True
