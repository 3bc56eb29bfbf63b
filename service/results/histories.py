"""Loss histories of many jobs at once, read in bounded chunked queries, as a step x job grid."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from service.loss_store import DTYPE, IDS_PER_QUERY, Span, read_chunks, unpack
from service.models import LossChunk

# Stored values one read holds at most (8 bytes each): a job longer than this is read alone.
VALUES_PER_READ = 250_000

History = tuple[int, np.ndarray, np.ndarray]  # job id, steps (int64), losses (float64)


@dataclass(frozen=True)
class HistoryGrid:
    """Histories on one step axis: `losses[i, k]` is job i at `steps[k]` (NaN: none)."""

    job_ids: list[int]
    steps: np.ndarray  # (U,) int64, ascending
    losses: np.ndarray  # (jobs, U) float64, NaN where a job has no row at that step
    stored: np.ndarray  # (jobs, U) bool, whether a row was stored (a stored NaN counts)

    def row(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One job's stored steps and losses on the axis, in step order."""
        present = self.stored[index]
        return self.steps[present], self.losses[index][present]


def read_rows(session: so.Session, job_ids: Sequence[int]) -> np.ndarray:
    """(rows, 3) float64 of job_id, step, loss for the jobs, in (job_id, step) order."""
    ids, steps, losses = [], [], []
    for job_id, first, data in read_chunks(session, job_ids):
        values = unpack(data)
        ids.append(np.full(len(values), job_id, dtype=np.float64))
        steps.append(np.arange(first, first + len(values), dtype=np.float64))
        losses.append(values)
    if not losses:
        return np.empty((0, 3))
    return np.column_stack([np.concatenate(ids), np.concatenate(steps), np.concatenate(losses)])


def read_grid(session: so.Session, job_ids: Sequence[int]) -> HistoryGrid:
    """The jobs' whole histories on one step axis (every stored step)."""
    return grid_on(
        job_ids, step_axis(stored_spans(session, job_ids)), read_histories(session, job_ids)
    )


def stored_spans(session: so.Session, job_ids: Sequence[int]) -> dict[int, list[Span]]:
    """Each job's stored [first, end) spans, from the chunks' step columns alone (no data)."""
    spans: dict[int, list[Span]] = {job_id: [] for job_id in job_ids}
    ordered = sorted(spans)
    for start in range(0, len(ordered), IDS_PER_QUERY):
        query = sa.select(LossChunk.job_id, LossChunk.first_step, LossChunk.count).where(
            LossChunk.job_id.in_(ordered[start : start + IDS_PER_QUERY])
        )
        for job_id, first, count in session.execute(query):
            spans[job_id].append((first, first + count))
    return spans


def step_axis(spans: dict[int, list[Span]]) -> np.ndarray:
    """Every step some job stored, ascending (the union of the spans, merged first)."""
    merged: list[list[int]] = []
    for first, end in sorted(s for job in spans.values() for s in job):
        if merged and first <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([first, end])
    if not merged:
        return np.empty(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in merged])


def stride(axis: np.ndarray, columns: int) -> np.ndarray:
    """At most `columns` steps of the axis, evenly spaced, first and last kept."""
    if len(axis) <= columns:
        return axis
    return axis[np.unique(np.linspace(0, len(axis) - 1, max(columns, 2)).round().astype(np.int64))]


def read_groups(job_ids: Sequence[int], spans: dict[int, list[Span]]) -> Iterator[list[int]]:
    """The jobs in order, grouped so one group's stored values stay within VALUES_PER_READ."""
    group: list[int] = []
    held = 0
    for job_id in job_ids:
        size = sum(end - first for first, end in spans.get(job_id, []))
        if group and held + size > VALUES_PER_READ:
            yield group
            group, held = [], 0
        group.append(job_id)
        held += size
    if group:
        yield group


def _history(job_id: int, chunks: list[tuple[int, bytes]]) -> History:
    if not chunks:
        return job_id, np.empty(0, dtype=np.int64), np.empty(0, dtype=DTYPE)
    chunks.sort()
    losses = [unpack(data) for _, data in chunks]
    steps = [
        np.arange(f, f + len(v), dtype=np.int64) for (f, _), v in zip(chunks, losses, strict=True)
    ]
    return job_id, np.concatenate(steps), np.concatenate(losses)


def read_group(session: so.Session, job_ids: Sequence[int]) -> list[History]:
    """The whole histories of a few jobs (one group of read_groups), in the order given."""
    chunks: dict[int, list[tuple[int, bytes]]] = {job_id: [] for job_id in job_ids}
    for job_id, first, data in read_chunks(session, job_ids):
        chunks[job_id].append((first, data))
    return [_history(job_id, chunks[job_id]) for job_id in job_ids]


def read_histories(
    session: so.Session, job_ids: Sequence[int], spans: dict[int, list[Span]] | None = None
) -> Iterator[History]:
    """Each job's whole history in the order given, at most VALUES_PER_READ values held at once."""
    spans = stored_spans(session, job_ids) if spans is None else spans
    for group in read_groups(job_ids, spans):
        yield from read_group(session, group)


def grid_on(job_ids: Sequence[int], axis: np.ndarray, histories: Iterable[History]) -> HistoryGrid:
    """The histories at the axis's steps only (a step a job did not store: NaN)."""
    index = {job_id: i for i, job_id in enumerate(job_ids)}
    losses = np.full((len(job_ids), len(axis)), np.nan)
    stored = np.zeros((len(job_ids), len(axis)), dtype=bool)
    for job_id, steps, values in histories:
        at = np.searchsorted(steps, axis)
        hit = at < len(steps)
        hit[hit] = steps[at[hit]] == axis[hit]
        losses[index[job_id], hit] = values[at[hit]]
        stored[index[job_id], hit] = True
    return HistoryGrid(list(job_ids), axis, losses, stored)
