"""The fault suite's checker: for every accepted job, count lost, duplicated, unexpected results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models import TERMINAL_STATES, Job, JobStatus
from tests.support.loss_chunks import stored_rows


@dataclass
class Expectation:
    """What one accepted job must end as: its status, and its history when it trains to the end."""

    status: str | frozenset[str] = JobStatus.SUCCEEDED
    # The uninterrupted run's losses (bitwise on the CPU); None: only the shape is checked.
    # (The fault suite's env fills them in for every job that succeeded.)
    losses: list[float] | None = None
    max_attempts: int | None = None
    # Trained fused (in a batch message): its reference is the fused one.
    fused: bool = False


@dataclass
class Report:
    """Counts the suite asserts are all zero, with what each one was."""

    jobs_checked: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def counts(self) -> tuple[int, int, int]:
        """(lost, duplicated, unexpected)."""
        return len(self.lost), len(self.duplicated), len(self.unexpected)


def check(sessions: so.sessionmaker[so.Session], accepted: dict[int, Expectation]) -> Report:
    """Compare the database with the accepted jobs."""
    report = Report(jobs_checked=len(accepted))
    with sessions() as session:
        jobs = {job.id: job for job in session.scalars(sa.select(Job))}
        # Every stored step, decoded by hand: a step stored twice (overlapping chunks) shows.
        steps_of: dict[int, list[int]] = {}
        losses_of: dict[int, list[float]] = {}
        for job_id, step, loss in stored_rows(session):
            steps_of.setdefault(job_id, []).append(step)
            losses_of.setdefault(job_id, []).append(loss)
        for job_id in set(jobs) - set(accepted):
            report.unexpected.append(f"job {job_id} exists but was never accepted")
        for job_id in set(steps_of) - set(accepted):
            report.unexpected.append(f"{len(steps_of[job_id])} losses of unknown job {job_id}")
        for job_id, expected in accepted.items():
            job = jobs.get(job_id)
            if job is None:
                report.lost.append(f"job {job_id} accepted but has no row")
                continue
            steps, losses = steps_of.get(job_id, []), losses_of.get(job_id, [])
            _check_job(report, job, steps, losses, expected)
    return report


def _check_job(
    report: Report, job: Job, steps: list[int], losses: list[float], expected: Expectation
) -> None:
    if job.status not in TERMINAL_STATES:
        report.lost.append(f"job {job.id} never ended: {job.status}")
        return
    repeated = [step for step, n in Counter(steps).items() if n > 1]
    if repeated or len(steps) > job.iterations:
        report.duplicated.append(f"job {job.id}: {len(steps)} rows, repeated steps {repeated[:5]}")
    if steps != list(range(len(steps))):
        report.lost.append(f"job {job.id}: its history has holes")
    allowed = {expected.status} if isinstance(expected.status, str) else expected.status
    if job.status not in allowed:
        report.unexpected.append(f"job {job.id} ended {job.status}, expected {expected.status}")
    if job.steps_done != len(steps):
        report.unexpected.append(f"job {job.id}: steps_done {job.steps_done} != {len(steps)} rows")
    if job.status == JobStatus.SUCCEEDED and len(steps) != job.iterations:
        report.lost.append(f"job {job.id} succeeded with {len(steps)}/{job.iterations} rows")
    if expected.max_attempts is not None and job.attempts > expected.max_attempts:
        report.unexpected.append(f"job {job.id} ran {job.attempts} times")
    succeeded = expected.losses is not None and job.status == JobStatus.SUCCEEDED
    if succeeded and losses != expected.losses:
        # A history that differs from the one uninterrupted run: two runs mixed in the record.
        report.unexpected.append(f"job {job.id}: history differs from an uninterrupted run")
    pruned = expected.losses is not None and job.status == JobStatus.PRUNED
    if pruned and losses != expected.losses[: len(losses)]:
        # A pruned job's history is where the uninterrupted run was when its rule stopped it.
        report.unexpected.append(f"job {job.id}: pruned history is not the run's beginning")
