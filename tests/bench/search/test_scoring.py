"""Search figures on tiny hand-made searches: steps to target, best by budget, regret."""

from __future__ import annotations

import math

from bench.search.scoring import Run, Trial, best_by, lr_grid, pruning_regret, summary, to_target

REFERENCE = 1.0


def trial(end: float, steps: int, status: str, loss: float | None, lr: float) -> Trial:
    return Trial(end, steps, status, loss, {"optimizer": "adam", "init": "normal", "lr": lr})


# Listed out of end order on purpose: the figures follow end times, not list order.
TRIALS = [
    trial(3.0, 500, "finished", 1.04, 1e-3),  # within 5%, not 1%
    trial(1.0, 60, "pruned", None, 1e-5),
    trial(2.0, 20, "pruned", None, 1e-2),
    trial(5.0, 500, "finished", 1.005, 1e-4),  # within 1%
    trial(4.0, 180, "diverged", None, 1e-1),
]
# What the pruned ones would have ended at, trained to the end.
FULL = {1e-5: 1.009, 1e-2: 3.0, 1e-3: 1.04, 1e-4: 1.005, 1e-1: math.inf}


def test_steps_to_target_count_every_trial_ended_by_then_in_end_order() -> None:
    # 60 + 20 + 500 when the 1.04 trial ends at 3 s; + 180 + 500 when the 1.005 one ends
    assert to_target(TRIALS, REFERENCE, 0.05) == (580, 3.0)
    assert to_target(TRIALS, REFERENCE, 0.01) == (1260, 5.0)
    assert to_target(TRIALS, REFERENCE, 0.001) is None


def test_a_pruned_or_diverged_trial_never_reaches_the_target() -> None:
    pruned = [trial(1.0, 20, "pruned", 0.5, 1e-2), trial(2.0, 30, "diverged", None, 1e-1)]
    assert to_target(pruned, REFERENCE, 0.05) is None


def test_best_by_a_budget_counts_only_trials_ended_within_it() -> None:
    assert best_by(TRIALS, 579) is None
    assert best_by(TRIALS, 580) == 1.04
    assert best_by(TRIALS, 1259) == 1.04
    assert best_by(TRIALS, math.inf) == 1.005


def test_pruning_regret_counts_pruned_trials_that_would_have_finished_within_1_percent() -> None:
    assert pruning_regret(TRIALS, lambda p: FULL[p["lr"]], REFERENCE) == (1, 2)
    assert pruning_regret(TRIALS, lambda p: FULL[p["lr"]], REFERENCE, 0.0) == (0, 2)


def test_summary_takes_medians_with_never_as_infinite() -> None:
    never = [trial(1.0, 500, "finished", 2.0, 1e-3)]
    runs = [Run("x", 0, TRIALS, 6.0), Run("x", 1, TRIALS, 8.0), Run("x", 2, never, 9.0)]
    medians = summary(runs, REFERENCE, 10_000, lambda p: FULL[p["lr"]])["medians"]
    assert medians["steps_to_1%"] == {"median": 1260, "min": 1260, "max": 1260, "reached": 2}
    assert medians["wall"]["median"] == 8.0
    assert medians["pruned_within_1%"]["median"] == 1
    # 10% of 10,000 grid steps: the 1.04 trial ended at 580 steps, the 1.005 one at 1,260
    assert medians["best_at_10%"]["median"] == 1.04


def test_the_grid_spans_the_space_in_half_decades() -> None:
    rates = lr_grid()
    assert (len(rates), rates[0], rates[-1]) == (13, 1e-7, 1e-1)
    assert math.isclose(rates[1], 10**-6.5, rel_tol=1e-5)
