"""Which factor mattered: per-level statistics and main effects of the final log10 loss.

The outcome of a job is log10 of its final loss. Succeeded jobs give their own; a diverged
job is the worst outcome, not missing data: it scores `DIVERGED_MARGIN` (one decade) above the
worst finite outcome of the sweep, or 0.0 when no job of the sweep ended finite. A pruned job
is left out (its last loss is where its sweep's rule stopped it, not a final loss: the
leaderboard ranks it among the pruned instead) and counted in `pruned` and `excluded`, as
failed, cancelled and unfinished jobs are left out and counted. Other factors and seeds are the
replicates of a level. Pure: rows in, numbers out.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

DIVERGED_MARGIN = 1.0
# A loss of exactly 0 (e.g. a zero init on zero targets) would be log10 -inf.
LOSS_FLOOR = 1e-300


def level_key(value: Any) -> str:
    """A level as a JSON object key: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, level_key(value))


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
    """Levels, main effects, best configuration and best lr per (optimizer, init)."""
    scored, summary = outcomes(rows)
    result: dict[str, Any] = {
        "outcome": "log10(final_loss)",
        "diverged_rule": f"worst finite outcome + {DIVERGED_MARGIN:g} (0.0 when none is finite)",
        "pruned_rule": "left out: stopped early by the sweep's rule, so no final loss",
        **summary,
        "factors": {},
        "main_effects": [],
        "best_config": None,
        "best_lr": [],
    }
    if not scored:
        return result
    ys = [y for _, y in scored]
    grand = sum(ys) / len(ys)
    total_ss = sum((y - grand) ** 2 for y in ys)
    result.update({"grand_mean": grand, "total_ss": total_ss})
    raw: dict[tuple[str, str], Any] = {}
    for row, _ in scored:
        for name in factors:
            raw[(name, level_key(row.get(name)))] = row.get(name)
    for name in factors:
        groups = _groups(scored, [name])
        sort_keys = {key: _sort_key(raw[(name, key[0])]) for key in groups}
        ordered = sorted(groups, key=sort_keys.__getitem__)
        levels = {key[0]: {"value": raw[(name, key[0])], **_stats(groups[key])} for key in ordered}
        between = sum(len(g) * (sum(g) / len(g) - grand) ** 2 for g in groups.values())
        share = between / total_ss if total_ss > 0 else None
        result["factors"][name] = {
            "levels": levels,
            # The level keys in order (numbers by value): JSON objects come back key-sorted.
            "order": [key[0] for key in ordered],
            "between_ss": between,
            "share": share,
        }
    # A list, largest share first: JSON objects may come back with their keys re-sorted.
    result["main_effects"] = sorted(
        ({"factor": name, "share": f["share"]} for name, f in result["factors"].items()),
        key=lambda effect: -(effect["share"] or 0.0),
    )
    result["best_config"] = _best(scored, list(factors))
    if "lr" in factors:
        result["best_lr"] = _best_lr(scored)
    return result


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
