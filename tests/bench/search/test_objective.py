"""The search bench's objective: trainq's training, reporting every n steps to a tuner."""

from __future__ import annotations

import math

from bench.search.objective import train_reporting


def test_the_objective_reports_every_n_steps_and_stops_when_told() -> None:
    fields = {
        "stage": "optim",
        "optimizer": "adam",
        "init": "normal",
        "lr": 1e-3,
        "iterations": 50,
        "N": 4,
        "D_in": 3,
        "H": 3,
        "D_out": 2,
        "seed": 0,
        "dtype": "float32",
    }
    seen: list[int] = []
    steps, final, diverged = train_reporting(fields, 10, lambda s, _: seen.append(s) or s < 20)
    assert (seen, steps, final, diverged) == ([10, 20], 20, None, False)
    steps, final, _ = train_reporting(fields, 10, lambda s, _: True)
    assert steps == 50
    assert final is not None
    assert math.isfinite(final)
