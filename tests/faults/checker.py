"""The fault suite's checker: for every accepted job, count lost, duplicated, unexpected results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models import TERMINAL_STATES, Job, JobStatus, Loss


@dataclass
class Expectation:
    """What one accepted job must end as: its status, and its history when it trains to the end."""

    status: str = JobStatus.SUCCEEDED
    # The uninterrupted run's losses (bitwise on the CPU); None: only the shape is checked.
    # (The fault suite's env fills them in for every job that succeeded.)
    losses: list[float] | None = None
    max_attempts: int | None = None


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
        rows_per_job = dict(
            session.execute(sa.select(Loss.job_id, sa.func.count()).group_by(Loss.job_id)).all()
        )
        for job_id in set(jobs) - set(accepted):
            report.unexpected.append(f"job {job_id} exists but was never accepted")
        for job_id in set(rows_per_job) - set(accepted):
            report.unexpected.append(f"{rows_per_job[job_id]} loss rows of unknown job {job_id}")
        for job_id, expected in accepted.items():
            job = jobs.get(job_id)
            if job is None:
                report.lost.append(f"job {job_id} accepted but has no row")
                continue
            steps = list(
                session.scalars(
                    sa.select(Loss.step).where(Loss.job_id == job_id).order_by(Loss.step)
                )
            )
            _check_job(report, job, steps, expected, session)
    return report


def _check_job(
    report: Report, job: Job, steps: list[int], expected: Expectation, session: so.Session
) -> None:
    if job.status not in TERMINAL_STATES:
        report.lost.append(f"job {job.id} never ended: {job.status}")
        return
    repeated = [step for step, n in Counter(steps).items() if n > 1]
    if repeated or len(steps) > job.iterations:
        report.duplicated.append(f"job {job.id}: {len(steps)} rows, repeated steps {repeated[:5]}")
    if steps != list(range(len(steps))):
        report.lost.append(f"job {job.id}: its history has holes")
    if job.status != expected.status:
        report.unexpected.append(f"job {job.id} ended {job.status}, expected {expected.status}")
    if job.steps_done != len(steps):
        report.unexpected.append(f"job {job.id}: steps_done {job.steps_done} != {len(steps)} rows")
    if job.status == JobStatus.SUCCEEDED and len(steps) != job.iterations:
        report.lost.append(f"job {job.id} succeeded with {len(steps)}/{job.iterations} rows")
    if expected.max_attempts is not None and job.attempts > expected.max_attempts:
        report.unexpected.append(f"job {job.id} ran {job.attempts} times")
    if expected.losses is not None and job.status == JobStatus.SUCCEEDED:
        stored = list(
            session.scalars(sa.select(Loss.loss).where(Loss.job_id == job.id).order_by(Loss.step))
        )
        if stored != expected.losses:
            # A history that differs from the one uninterrupted run: two runs mixed in the record.
            report.unexpected.append(f"job {job.id}: history differs from an uninterrupted run")
