"""Which factor mattered: per-level statistics, main effects and two-way interactions.

The outcome of a job is log10 of its final loss. Succeeded jobs give their own; a diverged
job is the worst outcome, not missing data: it scores `DIVERGED_MARGIN` (one decade) above the
worst loss the sweep has seen (`seen_losses`: succeeded jobs' final losses, pruned jobs' losses
at their rung, every job's initial loss), so it ranks below every run that did not diverge,
pruned ones included; 0.0 when the sweep has seen no loss. A level, cell or configuration
whose runs all diverged is marked `all_diverged` and is never a best; a pair (optimizer, init)
whose every lr diverged has no best lr (`lr` null). A pruned job
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


Scored = list[tuple[dict, float]]


def _diverged(row: dict[str, Any]) -> bool:
    return row["status"] == "diverged"


def _stats(scored: Scored) -> dict[str, Any]:
    """Count, mean, spread and range of the outcomes, and how many of the runs diverged."""
    values = [y for _, y in scored]
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    diverged = sum(_diverged(row) for row, _ in scored)
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "min": min(values),
        "max": max(values),
        "diverged": diverged,
        "all_diverged": diverged == n,
    }


def _finite(loss: float | None) -> bool:
    return loss is not None and math.isfinite(loss)


def seen_losses(rows: Iterable[dict[str, Any]]) -> list[float]:
    """Every finite loss the sweep has seen that a diverged run must rank below: succeeded
    final losses, pruned losses at their rung, and every job's initial loss."""
    seen = []
    for row in rows:
        status = row["status"]
        if status == "succeeded" and _finite(row.get("final_loss")):
            seen.append(row["final_loss"])
        if status == "pruned" and _finite(row.get("pruned_loss")):
            seen.append(row["pruned_loss"])
        if _finite(row.get("initial_loss")):
            seen.append(row["initial_loss"])
    return seen


def _log10(loss: float) -> float:
    return math.log10(max(loss, LOSS_FLOOR))


def outcomes(rows: Iterable[dict[str, Any]]) -> tuple[Scored, dict[str, Any]]:
    """(row, final log10 loss) for every job that counts, and what was counted how."""
    rows = list(rows)
    finite: Scored = []
    diverged: list[dict] = []
    excluded: defaultdict[str, int] = defaultdict(int)
    for row in rows:
        loss = row.get("final_loss")
        if row["status"] == "succeeded" and loss is not None and _finite(loss):
            finite.append((row, _log10(loss)))
        elif _diverged(row):
            diverged.append(row)
        else:
            excluded[row["status"]] += 1
    worst = max((_log10(loss) for loss in seen_losses(rows)), default=None)
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


def _groups(scored: Scored, names: Sequence[str]) -> dict[tuple, Scored]:
    groups: dict[tuple, Scored] = defaultdict(list)
    for row, y in scored:
        groups[tuple(level_key(row.get(name)) for name in names)].append((row, y))
    return groups


def _mean(scored: Scored) -> float:
    return sum(y for _, y in scored) / len(scored)


def factor_table(rows: Iterable[dict[str, Any]], factors: Sequence[str]) -> dict[str, Any]:
    """Levels, main effects, interactions, best configuration and best lr per (optimizer, init)."""
    scored, summary = outcomes(rows)
    result: dict[str, Any] = {
        "outcome": "log10(final_loss)",
        "diverged_rule": (
            f"log10 of the worst loss the sweep has seen + {DIVERGED_MARGIN:g}: succeeded final"
            " losses, pruned losses at their rung, every job's initial loss (0.0 when none), so a"
            " diverged run ranks below every run that did not; a level, cell or configuration"
            " whose runs all diverged is marked all_diverged and is never a best"
        ),
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
    scored: Scored, name: str, levels: Levels, grand: float, total_ss: float
) -> dict[str, Any]:
    """One factor's levels in order, with SS_A and its share."""
    groups: dict[str, Scored] = defaultdict(list)
    example: dict[str, Any] = {}
    for row, y in scored:
        key = levels.key(row.get(name))
        groups[key].append((row, y))
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
    between = sum(len(g) * (_mean(g) - grand) ** 2 for g in groups.values())
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
    scored: Scored,
    pair: tuple[str, str],
    levels: dict[str, Levels],
    mains: dict[str, dict[str, Any]],
    grand: float,
    total_ss: float,
) -> dict[str, Any]:
    """SS_AB of one pair and its cells (row-major in level order): the heatmap's numbers."""
    a, b = pair
    cells: dict[tuple[str, str], Scored] = defaultdict(list)
    for row, y in scored:
        cells[(levels[a].key(row.get(a)), levels[b].key(row.get(b)))].append((row, y))
    cells_ss = sum(len(g) * (_mean(g) - grand) ** 2 for g in cells.values())
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


def _best(scored: Scored, names: list[str]) -> dict[str, Any] | None:
    """The configuration of `names` with the lowest mean outcome over its replicates, among
    those where some run did not diverge (None: every one diverged)."""
    groups = _groups(scored, names)
    candidates = [k for k, group in groups.items() if not all(_diverged(r) for r, _ in group)]
    if not candidates:
        return None
    key = min(candidates, key=lambda k: (_mean(groups[k]), k))
    row = groups[key][0][0]
    return {"config": {n: row.get(n) for n in names}, **_stats(groups[key])}


def _best_lr(scored: Scored) -> list[dict[str, Any]]:
    """For each (optimizer, init), the lr whose mean outcome over everything else is lowest;
    `lr` null (and no statistics) where every lr diverged."""
    pairs = sorted({(row["optimizer"], row["init"]) for row, _ in scored})
    best = []
    for optimizer, init in pairs:
        subset = [(r, y) for r, y in scored if (r["optimizer"], r["init"]) == (optimizer, init)]
        choice = _best(subset, ["lr"])
        if choice is None:
            none = dict.fromkeys(("mean", "std", "min", "max"))
            choice = {"config": {"lr": None}, "n": len(subset), **none}
            choice.update(diverged=len(subset), all_diverged=True)
        best.append({"optimizer": optimizer, "init": init, "lr": choice["config"]["lr"], **choice})
    for entry in best:
        entry.pop("config")
    return best
