"""Outcomes: each job's one terminal state (or its hand-back) from how its training ended."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.orm as so
import torch

from service import job_states
from service.models import Job, JobStatus
from worker.attempts.claims import Claim
from worker.attempts.record import finish_job, hand_back
from worker.heartbeat import Heartbeat
from worker.training.outcome import Outcome

log = logging.getLogger(__name__)


def write_outcomes(
    session: so.Session,
    beat: Heartbeat,
    claims: list[Claim],
    outcomes: list[Outcome],
    error: Exception | None,
    ran_on: str | None,
) -> dict[int, str]:
    """Each job's one terminal state (or its hand-back), where its attempt still holds it."""
    results = {}
    for claim, outcome in zip(claims, outcomes, strict=True):
        job = session.get(Job, claim.job_id, populate_existing=True)
        if job_states.owns(job, claim) and job.is_terminal:
            # Ended while it trained, by its sweep's early stopping or a hard limit: said there.
            results[claim.job_id] = str(job.status)
            continue
        if beat.lost(claim):
            # Another attempt owns the job, or may by now: its outcome is not this one's.
            log.warning(
                "job %s: attempt %d lost its lease and stopped", claim.job_id, claim.attempt
            )
            results[claim.job_id] = "lost"
            continue
        if outcome.yielded and error is None and claim.failure is None:
            written = hand_back(session, claim)
            results[claim.job_id] = "handed back" if written else "superseded"
            continue
        status, details = status_of(claim, outcome, error)
        written = finish_job(
            session, claim, status, ran_on=ran_on, torch_version=torch.__version__, **details
        )
        results[claim.job_id] = str(status) if written else "superseded"
    return results


def status_of(
    claim: Claim, outcome: Outcome, error: Exception | None
) -> tuple[JobStatus, dict[str, Any]]:
    """The terminal state a training outcome stands for, with what the job records of it."""
    if error is not None:
        return JobStatus.FAILED, {"error": f"{type(error).__name__}: {error}"[:4000]}
    if claim.failure is not None:
        return JobStatus.FAILED, {"error": claim.failure}
    if outcome.diverged_at is not None:
        return JobStatus.DIVERGED, {"diverged_at": outcome.diverged_at}
    if outcome.stopped:
        return JobStatus.CANCELLED, {}
    return JobStatus.SUCCEEDED, {}
