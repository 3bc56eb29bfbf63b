"""ASHA's decisions recomputed from a finished sweep's stored rows, wherever each job ran.

A job's decision at a rung (go on or stop) depends on which other jobs had stored their loss at
that rung when its own flush crossed it, and that was a race between hosts. The rows bound it:
a job that had ended before this one started was seen; one that started after this one ended
was not; one that ran alongside it may or may not have been (same clock: every "host" here is
a namespace on one machine). A decision agrees with the rule when some competitor set within
those bounds gives it; it is certain when every such set gives the same answer.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models import Job, JobStatus, Sweep
from service.sweeps.early_stop import asha_promotes, asha_rungs
from service.sweeps.policy import SweepPolicy
from service.sweeps.request import Asha
from tests.support.loss_chunks import stored_history

MOST_ALONGSIDE = 12  # 2**12 competitor sets to try at one rung, at the most


@dataclass(frozen=True)
class RungDecision:
    """What one job did at one rung, and what the rule allows there."""

    job_id: int
    rung: int
    went_on: bool
    allowed: frozenset[bool]  # the decisions some possible competitor set gives

    @property
    def agrees(self) -> bool:
        """Whether the rule, with some competitor set the rows allow, decides the same."""
        return self.went_on in self.allowed

    @property
    def certain(self) -> bool:
        """Whether the rule's answer is the same whichever jobs running alongside were seen."""
        return len(self.allowed) == 1


def _reached(job: Job, rung: int) -> bool:
    """Whether the job stored its loss at `rung` and competed there (not pruned before it)."""
    pruned_before = job.status == JobStatus.PRUNED and (job.pruned_at or 0) < rung
    return job.steps_done > rung and not pruned_before


def _started(job: Job) -> datetime:
    assert job.started_at is not None
    return job.started_at


def _ended(job: Job) -> datetime:
    assert job.finished_at is not None
    return job.finished_at


def asha_rung_decisions(session: so.Session, sweep_id: int) -> list[RungDecision]:
    """Every rung decision of an ended asha sweep (no job diverged or retried), in job order."""
    rule = SweepPolicy.of(session.get_one(Sweep, sweep_id).request).early_stop
    assert isinstance(rule, Asha), rule
    jobs = session.scalars(sa.select(Job).where(Job.sweep_id == sweep_id).order_by(Job.id)).all()
    for job in jobs:
        # A diverged job counts at every rung and a retried one's start hides its first
        # attempt: the bounds above hold for neither, so neither may be in the sweep.
        assert job.status in (JobStatus.SUCCEEDED, JobStatus.PRUNED), (job.id, job.status)
        assert job.attempts == 1, (job.id, job.attempts)
    losses = {job.id: stored_history(session, job.id)[1] for job in jobs}
    for job in jobs:
        assert len(losses[job.id]) == job.steps_done, job.id
        assert all(math.isfinite(value) for value in losses[job.id]), job.id
    decisions = []
    for job in jobs:
        rungs = asha_rungs(rule, 0, job.steps_done, job.iterations)
        if job.status == JobStatus.PRUNED:
            assert job.pruned_at in rungs, (job.id, job.pruned_at, rungs)
            rungs = rungs[: rungs.index(job.pruned_at) + 1]
        for rung in rungs:
            others = [k for k in jobs if k.id != job.id and _reached(k, rung)]
            seen = [k for k in others if _ended(k) < _started(job)]
            maybe = [k for k in others if k not in seen and _started(k) <= _ended(job)]
            assert len(maybe) <= MOST_ALONGSIDE, (job.id, rung, len(maybe))
            own = losses[job.id][rung]
            base = [own, *(losses[k.id][rung] for k in seen)]
            allowed = frozenset(
                asha_promotes(own, [*base, *(losses[k.id][rung] for k in subset)], rule.reduction)
                for size in range(len(maybe) + 1)
                for subset in itertools.combinations(maybe, size)
            )
            went_on = not (job.status == JobStatus.PRUNED and rung == job.pruned_at)
            decisions.append(RungDecision(job.id, rung, went_on, allowed))
    return decisions
