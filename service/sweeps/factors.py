"""Which factor mattered: per-level statistics, main effects and two-way interactions.

The outcome of a job is log10 of its final loss. Succeeded jobs give their own; a diverged
job is the worst outcome, not missing data: it scores `DIVERGED_MARGIN` (one decade) above the
worst finite outcome of the sweep, or 0.0 when no job of the sweep ended finite. A pruned job
is left out (its last loss is where its sweep's rule stopped it, not a final loss: the
leaderboard ranks it among the pruned instead) and counted in `pruned` and `excluded`, as
failed, cancelled and unfinished jobs are left out and counted. Other factors and seeds are the
replicates of a level. Levels are ordered, and a continuous factor (more than
`levels.MAX_LEVELS` distinct positive numbers, a searched lr say) binned by decade, as
service/sweeps/levels.py says, for main effects and interactions alike.

Sums of squares, over the n scored outcomes y with grand mean m (classic two-way ANOVA on the
cell means, each weighted by its count): SS_total = sum (y - m)^2; a factor A with levels i,
n_i outcomes and mean m_i explains SS_A = sum_i n_i (m_i - m)^2; for a pair A x B with cells
(i, j), SS_cells = sum_ij n_ij (m_ij - m)^2 and the interaction is SS_AB = SS_cells - SS_A - SS_B.
A share is SS / SS_total. The pairs are optimizer x lr, optimizer x init and init x lr, those of
them the sweep varies. In an unbalanced design (a random search) the parts need not add up and
SS_AB may come out below zero: `ss` keeps it as computed, `share` counts it as 0.
Pure: rows in, numbers out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from service.sweeps.levels import MAX_LEVELS, Levels, level_key, level_sort_key, levels_of

DIVERGED_MARGIN = 1.0
# A loss of exactly 0 (e.g. a zero init on zero targets) would be log10 -inf.
LOSS_FLOOR = 1e-300
PAIRS = (("optimizer", "lr"), ("optimizer", "init"), ("init", "lr"))


def _stats(values: Sequence[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "std": std, "min": min(values), "max": max(values)}


def outcomes(rows: Iterable[dict[str, Any]]) -> tuple[list[tuple[dict, float]], dict[str, Any]]:
    """(row, final log10 loss) for every job that counts, and what was counted how."""
    finite: list[tuple[dict, float]] = []
    diverged: list[dict] = []
    excluded: defaultdict[str, int] = defaultdict(int)
    for row in rows:
        loss = row.get("final_loss")
        if row["status"] == "succeeded" and loss is not None and math.isfinite(loss):
            finite.append((row, math.log10(max(loss, LOSS_FLOOR))))
        elif row["status"] == "diverged":
            diverged.append(row)
        else:
            excluded[row["status"]] += 1
    worst = max((y for _, y in finite), default=None)
    diverged_value = worst + DIVERGED_MARGIN if worst is not None else 0.0
    scored = finite + [(row, diverged_value) for row in diverged]
    summary = {
        "used": len(scored),
        "diverged": len(diverged),
        "diverged_value": diverged_value if diverged else None,
        "pruned": excluded.get("pruned", 0),
        "excluded": dict(excluded),
    }
    return scored, summary


def _groups(scored: list[tuple[dict, float]], names: Sequence[str]) -> dict[tuple, list[float]]:
    groups: dict[tuple, list[float]] = defaultdict(list)
    for row, y in scored:
        groups[tuple(level_key(row.get(name)) for name in names)].append(y)
    return groups


def factor_table(rows: Iterable[dict[str, Any]], factors: Sequence[str]) -> dict[str, Any]:
    """Levels, main effects, interactions, best configuration and best lr per (optimizer, init)."""
    scored, summary = outcomes(rows)
    result: dict[str, Any] = {
        "outcome": "log10(final_loss)",
        "diverged_rule": f"worst finite outcome + {DIVERGED_MARGIN:g} (0.0 when none is finite)",
        "pruned_rule": "left out: stopped early by the sweep's rule, so no final loss",
        "binning_rule": (
            f"a factor of more than {MAX_LEVELS} distinct positive numbers is binned by decade:"
            " floor(log10(value)), labelled 1e{k}..1e{k+1}"
        ),
        "interaction_rule": "SS_AB = SS_cells - SS_A - SS_B, cell means weighted by counts",
        **summary,
        "factors": {},
        "main_effects": [],
        "interactions": [],
        "best_config": None,
        "best_lr": [],
    }
    if not scored:
        return result
    ys = [y for _, y in scored]
    grand = sum(ys) / len(ys)
    total_ss = sum((y - grand) ** 2 for y in ys)
    result.update({"grand_mean": grand, "total_ss": total_ss})
    levels = {name: levels_of(row.get(name) for row, _ in scored) for name in factors}
    for name in factors:
        result["factors"][name] = _main_effect(scored, name, levels[name], grand, total_ss)
    # A list, largest share first: JSON objects may come back with their keys re-sorted.
    result["main_effects"] = sorted(
        ({"factor": name, "share": f["share"]} for name, f in result["factors"].items()),
        key=lambda effect: -(effect["share"] or 0.0),
    )
    result["interactions"] = [
        _interaction(scored, (a, b), levels, result["factors"], grand, total_ss)
        for a, b in PAIRS
        if a in factors and b in factors
    ]
    result["best_config"] = _best(scored, list(factors))
    if "lr" in factors:
        result["best_lr"] = _best_lr(scored)
    return result


def _share(ss: float, total_ss: float) -> float | None:
    return max(ss, 0.0) / total_ss if total_ss > 0 else None


def _main_effect(
    scored: list[tuple[dict, float]], name: str, levels: Levels, grand: float, total_ss: float
) -> dict[str, Any]:
    """One factor's levels in order, with SS_A and its share."""
    groups: dict[str, list[float]] = defaultdict(list)
    example: dict[str, Any] = {}
    for row, y in scored:
        key = levels.key(row.get(name))
        groups[key].append(y)
        example.setdefault(key, row.get(name))
    order = sorted(groups, key=lambda key: level_sort_key(levels.value(example[key])))
    shown = {
        key: {
            **levels.describe(example[key]),
            **({"label": key} if levels.binned else {}),
            **_stats(groups[key]),
        }
        for key in order
    }
    between = sum(len(g) * (sum(g) / len(g) - grand) ** 2 for g in groups.values())
    return {
        "levels": shown,
        # The level keys in order (numbers by value): JSON objects come back key-sorted.
        "order": order,
        "binned": "decade" if levels.binned else None,
        "distinct": len({level_key(row.get(name)) for row, _ in scored}),
        "between_ss": between,
        "share": _share(between, total_ss),
    }


def _interaction(
    scored: list[tuple[dict, float]],
    pair: tuple[str, str],
    levels: dict[str, Levels],
    mains: dict[str, dict[str, Any]],
    grand: float,
    total_ss: float,
) -> dict[str, Any]:
    """SS_AB of one pair and its cells (row-major in level order): the heatmap's numbers."""
    a, b = pair
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row, y in scored:
        cells[(levels[a].key(row.get(a)), levels[b].key(row.get(b)))].append(y)
    cells_ss = sum(len(g) * (sum(g) / len(g) - grand) ** 2 for g in cells.values())
    ss = cells_ss - mains[a]["between_ss"] - mains[b]["between_ss"]
    rows, columns = mains[a]["order"], mains[b]["order"]
    return {
        "factors": [a, b],
        "name": f"{a} x {b}",
        "cells_ss": cells_ss,
        "ss": ss,
        "share": _share(ss, total_ss),
        "rows": rows,
        "columns": columns,
        "cells": [
            {"row": i, "column": j, **_stats(cells[(i, j)])}
            for i in rows
            for j in columns
            if (i, j) in cells
        ],
    }


def _best(scored: list[tuple[dict, float]], names: list[str]) -> dict[str, Any] | None:
    """The configuration of `names` with the lowest mean outcome over its replicates."""
    groups = _groups(scored, names)
    examples = {tuple(level_key(row.get(n)) for n in names): row for row, _ in scored}
    key = min(groups, key=lambda k: (sum(groups[k]) / len(groups[k]), k))
    row = examples[key]
    return {"config": {n: row.get(n) for n in names}, **_stats(groups[key])}


def _best_lr(scored: list[tuple[dict, float]]) -> list[dict[str, Any]]:
    """For each (optimizer, init), the lr whose mean outcome over everything else is lowest."""
    pairs = sorted({(row["optimizer"], row["init"]) for row, _ in scored})
    best = []
    for optimizer, init in pairs:
        subset = [(r, y) for r, y in scored if (r["optimizer"], r["init"]) == (optimizer, init)]
        choice = _best(subset, ["lr"])
        assert choice is not None
        best.append({"optimizer": optimizer, "init": init, "lr": choice["config"]["lr"], **choice})
    for entry in best:
        entry.pop("config")
    return best
