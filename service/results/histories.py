"""Loss histories of many jobs at once, read in a few chunked queries, as a step x job grid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sqlalchemy.orm as so

from service.loss_store import read_chunks, unpack


@dataclass(frozen=True)
class HistoryGrid:
    """Histories on the union of their steps: `losses[i, k]` is job i at `steps[k]` (NaN: none)."""

    job_ids: list[int]
    steps: np.ndarray  # (U,) int64, ascending
    losses: np.ndarray  # (jobs, U) float64, NaN where a job has no row at that step
    stored: np.ndarray  # (jobs, U) bool, whether a row was stored (a stored NaN counts)

    def row(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One job's stored steps and losses, in step order."""
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
    """The jobs' whole histories on one step axis."""
    rows = read_rows(session, job_ids)
    steps = np.unique(rows[:, 1]).astype(np.int64)
    ids = np.asarray(job_ids, dtype=np.int64)
    order = np.argsort(ids)
    row_index = order[np.searchsorted(ids[order], rows[:, 0].astype(np.int64))]
    col_index = np.searchsorted(steps, rows[:, 1].astype(np.int64))
    losses = np.full((len(job_ids), len(steps)), np.nan)
    stored = np.zeros((len(job_ids), len(steps)), dtype=bool)
    losses[row_index, col_index] = rows[:, 2]
    stored[row_index, col_index] = True
    return HistoryGrid(list(job_ids), steps, losses, stored)
