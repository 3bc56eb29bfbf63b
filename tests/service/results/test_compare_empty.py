"""Comparing jobs that have stored no loss yet answers, with no common step."""

from __future__ import annotations

import numpy as np

from service.results.compare import pairwise_max_rel_diff
from service.results.histories import HistoryGrid


def test_pairs_of_jobs_with_no_stored_step_have_no_difference() -> None:
    empty = np.zeros((2, 0))
    grid = HistoryGrid([3, 2], np.zeros(0, dtype=np.int64), empty, empty.astype(bool))
    pairs = list(pairwise_max_rel_diff(grid, 0, 10))
    assert pairs == [{"a": 3, "b": 2, "common_steps": 0, "max_rel_diff": None, "step": None}]
