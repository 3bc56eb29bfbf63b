"""Comparing loss histories: summaries, one shared downsampled step axis, pairwise differences."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from service.loss_store import finite_or_none
from service.results.histories import HistoryGrid

# Loss values at or below this are drawn and summed as this, so log10 stays finite.
LOG_FLOOR = 1e-300


def summarize(steps: np.ndarray, losses: np.ndarray) -> dict[str, Any]:
    """Final, min and its step, steps to fall below 1% and 0.1% of the initial loss, and the
    area under the log10-loss curve (trapezoids over steps, up to the first non-finite loss)."""
    summary: dict[str, Any] = {
        "steps": len(steps),
        "first_step": None,
        "last_step": None,
        "initial": None,
        "final": None,
        "min": None,
        "min_step": None,
        "step_below_1pct": None,
        "step_below_0_1pct": None,
        "auc_log10": None,
    }
    if len(steps) == 0:
        return summary
    summary.update(
        first_step=int(steps[0]),
        last_step=int(steps[-1]),
        initial=finite_or_none(losses[0]),
        final=finite_or_none(losses[-1]),
    )
    finite = np.isfinite(losses)
    if finite.any():
        best = int(np.argmin(np.where(finite, losses, np.inf)))
        summary["min"], summary["min_step"] = float(losses[best]), int(steps[best])
    initial = losses[0]
    if math.isfinite(initial):
        for key, fraction in (("step_below_1pct", 1e-2), ("step_below_0_1pct", 1e-3)):
            below = np.flatnonzero(finite & (losses < fraction * initial))
            summary[key] = int(steps[below[0]]) if len(below) else None
    # The curve ends where the loss stops being a number (a diverged job's last step).
    end = int(np.argmin(finite)) if not finite.all() else len(losses)
    if end >= 1:
        logs = np.log10(np.maximum(losses[:end], LOG_FLOOR))
        summary["auc_log10"] = float(np.trapezoid(logs, steps[:end].astype(np.float64)))
    return summary


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Mean of each row ignoring NaN (NaN for an all-NaN row), without a warning."""
    present = ~np.isnan(values)
    counts = present.sum(axis=1)
    sums = np.where(present, values, 0.0).sum(axis=1)
    out = np.full(len(values), np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def shared_axis(grid: HistoryGrid, points: int) -> np.ndarray:
    """Column indices of at most `points` steps, first and last always kept, chosen by
    Largest-Triangle-Three-Buckets over every job's log10 loss at once: in each bucket the
    step whose triangles, summed over the jobs, are largest, so bends and spikes survive."""
    count = len(grid.steps)
    if points <= 0 or count <= points:
        return np.arange(count)
    if points < 3:
        return np.array([0, count - 1][-points:])
    x = grid.steps.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log10(np.maximum(grid.losses, LOG_FLOOR))  # (jobs, U)
    y[~np.isfinite(grid.losses)] = np.nan
    every = (count - 2) / (points - 2)
    chosen = [0]
    a = 0
    for i in range(points - 2):
        lo, hi = int(i * every) + 1, int((i + 1) * every) + 1
        nlo, nhi = hi, min(int((i + 2) * every) + 1, count)
        avg_x = x[nlo:nhi].mean()
        avg_y = _nanmean_rows(y[:, nlo:nhi])  # (jobs,)
        ya = y[:, a : a + 1]  # (jobs, 1)
        areas = np.abs(
            (x[a] - avg_x) * (y[:, lo:hi] - ya) - (x[a] - x[lo:hi]) * (avg_y[:, None] - ya)
        )  # (jobs, bucket)
        total = np.where(np.isnan(areas), 0.0, areas).sum(axis=0)
        a = lo + int(np.argmax(total))
        chosen.append(a)
    chosen.append(count - 1)
    return np.array(chosen)


def pair_count(jobs: int) -> int:
    """Number of unordered pairs of distinct jobs."""
    return jobs * (jobs - 1) // 2


def pairwise_max_rel_diff(grid: HistoryGrid, offset: int, limit: int) -> Iterator[dict[str, Any]]:
    """Pairs (a, b), a before b in request order, from `offset`, at most `limit` of them: the
    largest |la - lb| / max(|la|, |lb|) over the steps both stored with finite losses."""
    values = np.where(np.isfinite(grid.losses), grid.losses, np.nan)
    jobs = len(grid.job_ids)
    seen, emitted = 0, 0
    for i in range(jobs - 1):
        row_pairs = jobs - 1 - i
        if seen + row_pairs <= offset:
            seen += row_pairs
            continue
        first = i + 1 + max(0, offset - seen)
        seen += row_pairs
        a, b = values[i][None, :], values[first:]
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.maximum(np.abs(a), np.abs(b))
            rel = np.where(scale > 0, np.abs(a - b) / scale, 0.0)
        rel = np.where(np.isnan(a) | np.isnan(b), -1.0, rel)
        common = (rel >= 0).sum(axis=1)
        # No stored step at all (jobs still queued): no argmax to take, every pair has none.
        where = rel.argmax(axis=1) if rel.shape[1] else np.zeros(len(rel), dtype=int)
        for k, j in enumerate(range(first, jobs)):
            if emitted >= limit:
                return
            emitted += 1
            has = common[k] > 0
            yield {
                "a": grid.job_ids[i],
                "b": grid.job_ids[j],
                "common_steps": int(common[k]),
                "max_rel_diff": float(rel[k, where[k]]) if has else None,
                "step": int(grid.steps[where[k]]) if has else None,
            }
