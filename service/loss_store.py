"""Loss histories in packed chunks: store a flush, read histories back, cut one back to a step."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models import LossChunk

DTYPE = np.dtype("<f8")
# Ids per query: far under every driver's bound-parameter limit, few round trips for 1,000 jobs.
IDS_PER_QUERY = 500

Span = tuple[int, int]  # [first step, end step)


def finite_or_none(value: float) -> float | None:
    """A loss as JSON can carry it: None for NaN and the infinities, which JSON has not."""
    value = float(value)
    return value if math.isfinite(value) else None


def pack(values: Sequence[float] | np.ndarray) -> bytes:
    """Values as little-endian float64 bytes, the layout of LossChunk.data."""
    return np.asarray(values, dtype=DTYPE).tobytes()


def unpack(data: bytes) -> np.ndarray:
    """The float64 values packed in a LossChunk's data (a read-only view)."""
    return np.frombuffer(data, dtype=DTYPE)


def uncovered(first: int, end: int, spans: Iterable[Span]) -> list[Span]:
    """The parts of [first, end) that none of the spans covers, in order."""
    parts, at = [], first
    for start, stop in sorted(spans):
        if stop <= at:
            continue
        if start >= end:
            break
        if start > at:
            parts.append((at, start))
        at = stop
        if at >= end:
            break
    if at < end:
        parts.append((at, end))
    return parts


def _stored_spans(session: so.Session, job_ids: list[int], after: int) -> dict[int, list[Span]]:
    """Each job's stored spans that end past step `after`."""
    spans: dict[int, list[Span]] = {}
    for start in range(0, len(job_ids), IDS_PER_QUERY):
        query = sa.select(LossChunk.job_id, LossChunk.first_step, LossChunk.count).where(
            LossChunk.job_id.in_(job_ids[start : start + IDS_PER_QUERY]),
            LossChunk.first_step + LossChunk.count > after,
        )
        for job_id, first, count in session.execute(query):
            spans.setdefault(job_id, []).append((first, first + count))
    return spans


def store_chunks(session: so.Session, chunks: Iterable[tuple[int, int, Sequence[float]]]) -> None:
    """Store each (job_id, first_step, values) as the job's steps from first_step on.

    Steps already stored keep their values (a flush retried after its commit got through
    adds nothing), so every step has at most one value. Callers hold the job rows locked.
    """
    wanted = [(job_id, first, values) for job_id, first, values in chunks if len(values)]
    if not wanted:
        return
    ids = sorted({job_id for job_id, _, _ in wanted})
    stored = _stored_spans(session, ids, min(first for _, first, _ in wanted))
    rows = []
    for job_id, first, values in wanted:
        spans = stored.setdefault(job_id, [])
        for start, stop in uncovered(first, first + len(values), spans):
            data = pack(values[start - first : stop - first])
            rows.append(
                {"job_id": job_id, "first_step": start, "count": stop - start, "data": data}
            )
            spans.append((start, stop))
    if rows:
        # Core executemany: one row per chunk, so this is one or a few rows a flush.
        session.connection().execute(sa.insert(LossChunk), rows)


def store_losses(
    session: so.Session, job_id: int, first_step: int, losses: Sequence[float]
) -> None:
    """Store losses[i] as the job's step first_step + i, keeping steps already stored."""
    store_chunks(session, [(job_id, first_step, losses)])


def read_chunks(session: so.Session, job_ids: Sequence[int]) -> Iterator[tuple[int, int, bytes]]:
    """(job_id, first_step, data) of the jobs' chunks in (job_id, first_step) order."""
    ordered = sorted(set(job_ids))
    for start in range(0, len(ordered), IDS_PER_QUERY):
        query = (
            sa.select(LossChunk.job_id, LossChunk.first_step, LossChunk.data)
            .where(LossChunk.job_id.in_(ordered[start : start + IDS_PER_QUERY]))
            .order_by(LossChunk.job_id, LossChunk.first_step)
        )
        # The driver's tuples as they are: no Row objects, no result processing of the bytes.
        result = session.connection().execute(query)
        rows = result.cursor.fetchall()
        result.close()
        yield from rows


def read_history(
    session: so.Session, job_id: int, start: int | None = None, stop: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A job's stored (steps, losses) between start (inclusive) and stop (exclusive)."""
    query = sa.select(LossChunk.first_step, LossChunk.data).where(LossChunk.job_id == job_id)
    if start is not None:
        query = query.where(LossChunk.first_step + LossChunk.count > start)
    if stop is not None:
        query = query.where(LossChunk.first_step < stop)
    result = session.connection().execute(query.order_by(LossChunk.first_step))
    chunks = result.cursor.fetchall()
    result.close()
    if not chunks:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=DTYPE)
    losses = [unpack(data) for _, data in chunks]
    steps = np.concatenate(
        [
            np.arange(first, first + len(part), dtype=np.int64)
            for (first, _), part in zip(chunks, losses, strict=True)
        ]
    )
    values = np.concatenate(losses)
    keep = np.ones(len(steps), dtype=bool)
    if start is not None:
        keep &= steps >= start
    if stop is not None:
        keep &= steps < stop
    return steps[keep], values[keep]


def cut_history(session: so.Session, job_id: int, stop: int) -> None:
    """Drop the job's losses at steps >= stop (a restart trains them again)."""
    session.execute(
        sa.delete(LossChunk).where(LossChunk.job_id == job_id, LossChunk.first_step >= stop)
    )
    if stop == 0:
        return  # every claim without a checkpoint: no chunk can start before step 0
    straddling = session.execute(
        sa.select(LossChunk.first_step, LossChunk.data).where(
            LossChunk.job_id == job_id,
            LossChunk.first_step < stop,
            LossChunk.first_step + LossChunk.count > stop,
        )
    ).all()
    for first, data in straddling:
        kept = stop - first
        session.execute(
            sa.update(LossChunk)
            .where(LossChunk.job_id == job_id, LossChunk.first_step == first)
            .values(count=kept, data=bytes(data[: kept * DTYPE.itemsize]))
        )
