"""A sweep's jobs read back for ranking and analysis: the leaderboard and the factor rows."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.db import row_count
from service.jobs import SPEC_COLUMNS
from service.loss_store import DTYPE, unpack
from service.models import Job, JobStatus, LossChunk

SORTS = {
    "final_loss": Job.final_loss,
    "min_loss": Job.min_loss,
    "min_loss_step": Job.min_loss_step,
    "steps_done": Job.steps_done,
    "lr": Job.lr,
    "id": Job.id,
}
SUMMARY = (
    Job.id,
    Job.status,
    Job.final_loss,
    Job.min_loss,
    Job.min_loss_step,
    Job.steps_done,
    Job.diverged_at,
    Job.pruned_at,
    Job.pruned_loss,
)
# Leaderboard buckets: finished finite runs first, then those stopped at a rung, then the rest
# in order of how bad.
PRUNED = Job.status == JobStatus.PRUNED.value
OUTCOME_RANK = sa.case(
    (Job.status == JobStatus.SUCCEEDED.value, 0),
    (PRUNED, 1),
    (Job.status == JobStatus.RUNNING.value, 2),
    (Job.status == JobStatus.QUEUED.value, 3),
    (Job.status == JobStatus.DIVERGED.value, 4),
    (Job.status == JobStatus.CANCELLED.value, 5),
    else_=6,
)
# By final loss, the pruned ones rank by the rung they reached (higher first), then their loss
# there: a job stopped later went on past more of its rivals.
BY_RUNG = [
    sa.case((PRUNED, -Job.pruned_at), else_=0),
    sa.case((PRUNED, Job.pruned_loss), else_=Job.final_loss).asc(),
]
DEFAULT_SORT = "final_loss"


def factor_fields(varied: list[str]) -> list[str]:
    """The varied job fields that are factors: stored columns, the seed left out."""
    return [f for f in varied if f in SPEC_COLUMNS and f != "seed"]


def _field_columns(fields: list[str]) -> list[sa.Label[Any]]:
    return [getattr(Job, SPEC_COLUMNS[f]).label(f"f_{f}") for f in fields]


def _as_dict(row: sa.Row[Any], fields: list[str]) -> dict[str, Any]:
    mapping = row._mapping
    item = {k: mapping[k] for k in mapping if not k.startswith("f_")}
    item.update({f: mapping[f"f_{f}"] for f in fields})
    return item


def _ranking(sort: str) -> list[sa.ColumnExpressionArgument[Any]]:
    """The leaderboard's order: `sort` ('-' first: descending) within outcome buckets, then id."""
    column = SORTS[sort.lstrip("-")]
    direction = column.desc() if sort.startswith("-") else column.asc()
    if sort == "final_loss":
        return [OUTCOME_RANK, *BY_RUNG, Job.id]
    return [direction, Job.id] if column is Job.id else [OUTCOME_RANK, direction, Job.id]


def leaderboard(
    session: so.Session,
    sweep_id: int,
    varied: list[str],
    *,
    sort: str,
    statuses: list[str],
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """A page of ranked rows (summary, varied fields, seed) and the number of rows in all."""
    fields = [*factor_fields(varied), "seed"]
    query = sa.select(*SUMMARY, *_field_columns(fields)).where(Job.sweep_id == sweep_id)
    if statuses:
        query = query.where(Job.status.in_(statuses))
    total = row_count(session, query)
    rows = session.execute(query.order_by(*_ranking(sort)).limit(limit).offset(offset)).all()
    ranked = [
        {"rank": rank, **_as_dict(row, fields)} for rank, row in enumerate(rows, start=offset + 1)
    ]
    return ranked, total


def leaderboard_jobs(session: so.Session, sweep_id: int, limit: int) -> list[Job]:
    """The leaderboard's first rows in its default order, as whole jobs (the sweep page)."""
    query = sa.select(Job).where(Job.sweep_id == sweep_id).order_by(*_ranking(DEFAULT_SORT))
    return list(session.scalars(query.limit(limit)))


def initial_losses(session: so.Session, sweep_id: int) -> dict[int, float]:
    """Each of the sweep's jobs' loss at step 0 (what a diverged run must rank below), for
    those that stored one, in one query."""
    # Only the first value leaves the database, not the chunk.
    first = sa.func.substr(LossChunk.data, 1, DTYPE.itemsize)
    query = (
        sa.select(LossChunk.job_id, first)
        .join(Job, Job.id == LossChunk.job_id)
        .where(Job.sweep_id == sweep_id, LossChunk.first_step == 0, LossChunk.count > 0)
    )
    return {job_id: float(unpack(bytes(data))[0]) for job_id, data in session.execute(query)}


def with_initial_losses(
    session: so.Session, sweep_id: int, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows, each with its job's `initial_loss` (None: none stored), as the factor table
    scores diverged runs."""
    initial = initial_losses(session, sweep_id)
    return [{**row, "initial_loss": initial.get(row["id"])} for row in rows]


def factor_rows(session: so.Session, sweep_id: int, varied: list[str]) -> list[dict[str, Any]]:
    """Every job of the sweep with its status, final, pruned and initial loss, factor fields."""
    fields = list(dict.fromkeys([*factor_fields(varied), "optimizer", "init", "lr", "seed"]))
    query = sa.select(
        Job.id, Job.status, Job.final_loss, Job.pruned_loss, *_field_columns(fields)
    ).where(Job.sweep_id == sweep_id)
    rows = [_as_dict(row, fields) for row in session.execute(query)]
    return with_initial_losses(session, sweep_id, rows)
