"""The search bench's table of a tiny hand-made run: a row per contender, seeds reached."""

from __future__ import annotations

import argparse
import math

from bench.search.scoring import Run, Trial, summary
from bench.search.table import render


def test_the_table_has_a_row_per_contender_with_seeds_reached() -> None:
    # Given one contender's three seeds, two of which reached 1% of the reference
    args = argparse.Namespace(seed_list=[0, 1, 2], trials=2, report_every=10)
    params = {"optimizer": "adam", "init": "normal", "lr": 1e-3}
    hit = [Trial(1.0, 500, "finished", 1.0, params), Trial(2.0, 20, "pruned", None, params)]
    miss = [Trial(1.5, 500, "finished", 3.0, params)]
    runs = [Run("trainq-random", seed, hit, 2.0) for seed in (0, 1)]
    runs.append(Run("trainq-random", 2, miss, 3.0))
    grid = {
        "jobs": 156,
        "wall": 9.0,
        "reference": 1.0,
        "best": params,
        "nominal_steps": 78_000,
        "steps": 78_000,
    }
    result = {
        "dims": {"N": 64, "D_in": 32, "H": 32, "D_out": 10},
        "grid": grid,
        "offline_seconds": 1.0,
        "contenders": {"trainq-random": summary(runs, 1.0, 78_000, lambda _: math.inf)},
    }
    # When the table is rendered
    text = render(result, args)
    # Then the row says the target was reached in 2 of 3 seeds and no pruned trial was regretted
    row = next(line for line in text.splitlines() if line.startswith("| trainq-random |"))
    assert "| 500 (500..500) [2/3] |" in row
    assert "| 0 / 2 |" in row
    assert "N, D_in, H, D_out = 64, 32, 32, 10; 3 search seeds [0, 1, 2], 2 trials each" in text
