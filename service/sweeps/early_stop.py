"""Early stopping: a sweep's rule, decided from stored histories at the flush crossing a rung.

A job's loss at step s is the one computed after s updates (the history's step s), so a rung at
s steps reads step s. `asha`: rungs at grace * reduction**k; a job reaching a rung goes on only
if its loss there is among the best len // reduction (at least the best one) of the losses at
that rung of the sweep's jobs that reached it, its own included, as Optuna's
SuccessiveHalvingPruner decides. A job pruned at an earlier rung does not compete at later
ones, even where its last flush stored them. `median`: from `warmup` on, at each flush, stop a
job whose best loss so far is worse than the median of the losses at that step of the sweep's
jobs that have ended (succeeded or diverged), as Optuna's MedianPruner compares with completed
trials. A diverged job counts as the worst (infinite loss) at every rung and step. No rung or
step is checked at a job's last step: stopping there saves nothing. Each decision is one query
that reads one value per job (8 bytes of its chunk, not the chunk); the median's is asked once
per flush and step (`StepLosses`), however many jobs of a stack flush there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from service.loss_store import DTYPE, unpack
from service.models import Job, JobStatus, LossChunk
from service.sweeps.request import Asha, Median

Rule = Asha | Median
WORST = math.inf


def asha_rungs(rule: Asha, first: int, end: int, iterations: int) -> list[int]:
    """The rung steps in [first, end), before the job's last step."""
    rungs, step = [], rule.grace
    while step < min(end, iterations - 1):
        if step >= first:
            rungs.append(step)
        step *= rule.reduction
    return rungs


def flush_steps(rule: Rule | None, iterations: int) -> frozenset[int]:
    """Steps whose loss is flushed as soon as it is computed, so the rule decides there.

    ASHA's rungs: a job pruned at rung 20 trains 21 steps (step 20's loss is its 21st), not on
    to the next timed flush. None for median, which decides at whatever flush comes, nor
    without a rule.
    """
    if not isinstance(rule, Asha):
        return frozenset()
    return frozenset(asha_rungs(rule, 0, iterations, iterations))


def asha_promotes(value: float, at_rung: Sequence[float], reduction: int) -> bool:
    """Whether `value` is in the best 1/reduction of the rung's losses (its own among them)."""
    ranked = sorted(at_rung)
    return value <= ranked[max(len(ranked) // reduction, 1) - 1]


def median_stops(best: float, ended: Sequence[float]) -> bool:
    """Whether a best-so-far loss is worse than the median of the ended jobs' losses there."""
    return bool(ended) and best > float(np.median(ended))


def losses_at(
    session: so.Session, sweep_id: int, step: int, *where: sa.ColumnElement[bool]
) -> list[float]:
    """The sweep's jobs' losses at `step` (the diverged ones' WORST), in one query."""
    covers = sa.and_(
        LossChunk.job_id == Job.id,
        LossChunk.first_step <= step,
        LossChunk.first_step + LossChunk.count > step,
    )
    diverged = Job.status == JobStatus.DIVERGED.value
    # Only the step's value leaves the database: a 10,000-job sweep's chunks are megabytes.
    width = DTYPE.itemsize
    value_at = sa.func.substr(LossChunk.data, (step - LossChunk.first_step) * width + 1, width)
    query = (
        sa.select(diverged.label("diverged"), value_at)
        .select_from(Job)
        .outerjoin(LossChunk, covers)
        .where(Job.sweep_id == sweep_id, sa.or_(LossChunk.job_id.is_not(None), diverged), *where)
    )
    values = []
    for is_diverged, data in session.execute(query):
        value = WORST if is_diverged else float(unpack(bytes(data))[0])
        values.append(value if math.isfinite(value) else WORST)
    return values


Ended = dict[tuple[int, int], list[float]]


class StepLosses:
    """One flush's reads of ended jobs' losses at a step, each (sweep, step) read once: a
    fused stack's jobs flush together at one step and would each ask the same.

    `known`: those read before the flush's write transaction (see `ended_at_steps`).
    """

    def __init__(self, session: so.Session, known: Ended | None = None) -> None:
        self.session = session
        self._ended: Ended = dict(known or {})

    def ended(self, sweep_id: int, step: int) -> list[float]:
        """The losses at `step` of the sweep's jobs that ended (succeeded or diverged)."""
        key = (sweep_id, step)
        if key not in self._ended:
            done = Job.status.in_([JobStatus.SUCCEEDED.value, JobStatus.DIVERGED.value])
            self._ended[key] = losses_at(self.session, sweep_id, step, done)
        return self._ended[key]


def ended_at_steps(session: so.Session, wanted: Iterable[tuple[int, int]]) -> Ended:
    """The ended jobs' losses at each (sweep, step): what a flush's median decisions will ask."""
    reads = StepLosses(session)
    for sweep_id, step in set(wanted):
        reads.ended(sweep_id, step)
    return reads._ended


def median_step(rule: Rule | None, sweep_id: int | None, first: int, count: int) -> int | None:
    """The step at which the median rule decides for a chunk of `count` losses from `first`
    (its last, from warmup on); None: no median decision (`decide` also skips a job's last)."""
    step = first + count - 1
    if not isinstance(rule, Median) or sweep_id is None or not count or step < rule.warmup:
        return None
    return step


def decide(
    reads: StepLosses, rule: Rule, job: Job, first: int, losses: Sequence[float]
) -> tuple[int, float] | None:
    """The rung (a step) at which this flush stops the job and its loss there; None: go on."""
    if job.sweep_id is None or not len(losses):
        return None
    session = reads.session
    end = first + len(losses)
    if isinstance(rule, Asha):
        for rung in asha_rungs(rule, first, end, job.iterations):
            # Jobs pruned at an earlier rung stored later steps too, but never reached this one.
            competes = sa.or_(Job.status != JobStatus.PRUNED.value, Job.pruned_at >= rung)
            at_rung = losses_at(session, job.sweep_id, rung, competes)
            value = float(losses[rung - first])
            if not asha_promotes(value, at_rung, rule.reduction):
                return rung, value
        return None
    step = median_step(rule, job.sweep_id, first, len(losses))
    if step is None or step >= job.iterations - 1 or job.min_loss is None:
        return None
    # The job deciding runs (its attempt holds it), so it is never among the ended ones.
    others = reads.ended(job.sweep_id, step)
    return (step, float(losses[-1])) if median_stops(job.min_loss, others) else None
