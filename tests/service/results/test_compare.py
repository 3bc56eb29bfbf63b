"""The compare arithmetic on hand-made grids (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from service.results.compare import pair_count, pairwise_max_rel_diff, shared_axis, summarize
from service.results.histories import HistoryGrid


def grid_of(*curves: list[float]) -> HistoryGrid:
    """Jobs 1..n sharing steps 0..len-1 (NaN: no row)."""
    width = max(len(c) for c in curves)
    losses = np.full((len(curves), width), np.nan)
    for i, curve in enumerate(curves):
        losses[i, : len(curve)] = curve
    return HistoryGrid(list(range(1, len(curves) + 1)), np.arange(width), losses, ~np.isnan(losses))


@pytest.mark.parametrize("points", [2, 3, 10, 57, 999])
def test_shared_axis_keeps_ends_and_size(points: int) -> None:
    curve = list(np.geomspace(100, 0.01, 1000))
    axis = shared_axis(grid_of(curve, curve[::2]), points)
    assert axis[0] == 0
    assert axis[-1] == 999
    assert len(axis) == points
    assert list(axis) == sorted(set(axis.tolist()))


def test_shared_axis_keeps_a_spike_of_any_job() -> None:
    smooth = list(np.geomspace(100, 1, 500))
    spiky = list(smooth)
    spiky[321] = 1e6
    assert 321 in shared_axis(grid_of(smooth, spiky), 30)
    assert 321 not in shared_axis(grid_of(smooth, smooth), 30)


def test_summary_of_nothing_and_of_a_flat_line() -> None:
    assert summarize(np.array([]), np.array([]))["final"] is None
    flat = summarize(np.arange(4), np.array([10.0, 10.0, 10.0, 10.0]))
    assert flat["auc_log10"] == pytest.approx(3.0)
    assert flat["step_below_1pct"] is None
    assert (flat["min"], flat["min_step"]) == (10.0, 0)


def test_pairs_of_disjoint_histories_have_no_difference() -> None:
    grid = grid_of([1.0, 2.0, np.nan, np.nan], [np.nan, np.nan, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0])
    pairs = list(pairwise_max_rel_diff(grid, 0, 10))
    assert len(pairs) == pair_count(3) == 3
    assert pairs[0] == {"a": 1, "b": 2, "common_steps": 0, "max_rel_diff": None, "step": None}
    assert pairs[1]["max_rel_diff"] == pytest.approx(0.5)
    assert pairs[1]["step"] == 1
    assert [(p["a"], p["b"]) for p in pairwise_max_rel_diff(grid, 1, 1)] == [(1, 3)]
