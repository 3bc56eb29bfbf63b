"""The stored loss chunks read back by hand (struct, not service.loss_store), for checks."""

from __future__ import annotations

import struct
from collections.abc import Iterable

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models import LossChunk


def stored_rows(session: so.Session, job_ids: Iterable[int] | None = None) -> list[tuple]:
    """(job_id, step, loss) of every stored step, in (job_id, step) order, duplicates kept."""
    query = sa.select(LossChunk.job_id, LossChunk.first_step, LossChunk.count, LossChunk.data)
    if job_ids is not None:
        query = query.where(LossChunk.job_id.in_(list(job_ids)))
    rows = []
    for job_id, first, count, data in session.execute(query):
        assert len(data) == 8 * count, f"job {job_id}: chunk at {first} holds {len(data)} bytes"
        values = struct.unpack(f"<{count}d", data)
        rows += [(job_id, first + i, value) for i, value in enumerate(values)]
    return sorted(rows, key=lambda row: (row[0], row[1]))


def stored_steps(session: so.Session, job_id: int) -> list[int]:
    """The job's stored steps in order, a step stored twice listed twice."""
    return [step for _, step, _ in stored_rows(session, [job_id])]


def stored_history(session: so.Session, job_id: int) -> tuple[list[int], list[float]]:
    """The job's (steps, losses) in step order."""
    rows = stored_rows(session, [job_id])
    return [row[1] for row in rows], [row[2] for row in rows]
