"""The figures a search is scored by: steps and seconds to a target, best by a budget, regret."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.report import median
from bench.search.space import LR_RANGE

# 1% and 5% as the issue asks; 2x too, since every good configuration here trains to a loss of
# ~4e-12 (float32's floor), where 1% tells near-equal configurations apart by rounding.
TOLERANCES = (0.01, 0.05, 1.0)
FRACTIONS = (0.10, 0.25, 0.50)


@dataclass
class Trial:
    """One trial as it ended: seconds after the search started, steps trained, its outcome."""

    end: float
    steps: int
    status: str  # finished, pruned or diverged
    loss: float | None  # the final loss of a finished trial
    params: dict[str, Any]


@dataclass
class Run:
    """One contender's search for one seed."""

    contender: str
    seed: int
    trials: list[Trial]
    wall: float
    notes: dict[str, Any] = field(default_factory=dict)


def lr_grid(count: int = 13, low: float = LR_RANGE[0], high: float = LR_RANGE[1]) -> list[float]:
    """count learning rates spaced evenly in log10 from low to high, both included."""
    a, b = math.log10(low), math.log10(high)
    return [float(f"{10 ** (a + (b - a) * i / (count - 1)):.6g}") for i in range(count)]


def key(params: dict[str, Any]) -> tuple[str, str, float]:
    """A configuration's identity: optimizer, init and lr."""
    return (params["optimizer"], params["init"], float(params["lr"]))


def within(loss: float | None, reference: float, tolerance: float) -> bool:
    """Whether a final loss is within tolerance (relative) of the reference."""
    return loss is not None and math.isfinite(loss) and loss <= reference * (1 + tolerance)


def in_end_order(trials: Iterable[Trial]) -> list[tuple[Trial, int]]:
    """Trials by end time, each with the steps of all trials ended so far, itself included."""
    total, ordered = 0, []
    for trial in sorted(trials, key=lambda t: t.end):
        total += trial.steps
        ordered.append((trial, total))
    return ordered


def to_target(
    trials: Iterable[Trial], reference: float, tolerance: float
) -> tuple[int, float] | None:
    """(steps, seconds) when the first finished trial within tolerance ended; None: never."""
    for trial, steps in in_end_order(trials):
        if trial.status == "finished" and within(trial.loss, reference, tolerance):
            return steps, trial.end
    return None


def best_by(trials: Iterable[Trial], budget: float) -> float | None:
    """The best final loss of the trials finished before budget steps were spent in all."""
    best = None
    for trial, steps in in_end_order(trials):
        if steps > budget:
            break
        if trial.status == "finished" and trial.loss is not None and math.isfinite(trial.loss):
            best = trial.loss if best is None else min(best, trial.loss)
    return best


def pruning_regret(
    trials: Iterable[Trial],
    full: Callable[[dict[str, Any]], float],
    reference: float,
    tolerance: float = 0.01,
) -> tuple[int, int]:
    """(pruned trials that would have finished within tolerance, pruned trials)."""
    pruned = [trial for trial in trials if trial.status == "pruned"]
    regret = sum(within(full(trial.params), reference, tolerance) for trial in pruned)
    return regret, len(pruned)


def robust_median(values: list[float]) -> float:
    """The median, where math.inf stands for 'never reached'."""
    return median(values) if values else math.nan


def fmt(value: float | None, digits: str = ".4g") -> str:
    """A figure for the table ('-' for none, 'never' for math.inf)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == math.inf:
        return "never"
    return format(value, digits)


def summary(
    runs: list[Run], reference: float, grid_steps: int, full: Callable[[dict[str, Any]], float]
) -> dict[str, Any]:
    """Per-seed figures and their medians and ranges, for one contender's runs."""
    per_seed: list[dict[str, Any]] = []
    for run in runs:
        figures: dict[str, Any] = {"seed": run.seed, "wall": run.wall, "trials": len(run.trials)}
        figures["steps"] = sum(trial.steps for trial in run.trials)
        for tolerance in TOLERANCES:
            hit = to_target(run.trials, reference, tolerance)
            name = f"{round(tolerance * 100)}%"
            figures[f"steps_to_{name}"] = hit[0] if hit else math.inf
            figures[f"seconds_to_{name}"] = hit[1] if hit else math.inf
        for fraction in FRACTIONS:
            figures[f"best_at_{round(fraction * 100)}%"] = best_by(
                run.trials, fraction * grid_steps
            )
        figures["best"] = best_by(run.trials, math.inf)
        regret, pruned = pruning_regret(run.trials, full, reference)
        figures["pruned"], figures["pruned_within_1%"] = pruned, regret
        per_seed.append(figures)
    names = [name for name in per_seed[0] if name != "seed"] if per_seed else []
    medians: dict[str, Any] = {}
    for name in names:
        values = [f[name] for f in per_seed if f[name] is not None]
        finite = [v for v in values if v != math.inf]
        medians[name] = {
            "median": robust_median(values),
            "min": min(finite) if finite else None,
            "max": max(finite) if finite else None,
            "reached": len(finite),
        }
    return {"per_seed": per_seed, "medians": medians}
