"""A size's table: medians and ranges over the seeds, one row per contender."""

from __future__ import annotations

import argparse
from typing import Any

from bench.report import table
from bench.search.scoring import FRACTIONS, fmt
from bench.search.space import PARALLEL


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    """The size's table of medians and ranges."""
    grid = result["grid"]
    headers = [
        "contender",
        "to 1%: steps",
        "to 1%: s",
        "to 5%: steps",
        "to 5%: s",
        "to 2x: steps",
        "to 2x: s",
        "best @10% / 25% / 50% grid steps",
        "pruned within 1% / pruned",
        "steps in all",
        "wall s",
    ]

    def cell(m: dict[str, Any], digits: str = ".4g") -> str:
        text = fmt(m["median"], digits)
        if m["min"] is not None and m["reached"] > 1:
            text += f" ({fmt(m['min'], digits)}..{fmt(m['max'], digits)})"
        if m["reached"] < len(args.seed_list):
            text += f" [{m['reached']}/{len(args.seed_list)}]"
        return text

    rows = []
    for name, data in result["contenders"].items():
        m = data["medians"]
        best = " / ".join(fmt(m[f"best_at_{round(f * 100)}%"]["median"]) for f in FRACTIONS)
        regret = sum(s["pruned_within_1%"] for s in data["per_seed"])
        pruned = sum(s["pruned"] for s in data["per_seed"])
        rows.append(
            [
                name,
                cell(m["steps_to_1%"], ".0f"),
                cell(m["seconds_to_1%"], ".3g"),
                cell(m["steps_to_5%"], ".0f"),
                cell(m["seconds_to_5%"], ".3g"),
                cell(m["steps_to_100%"], ".0f"),
                cell(m["seconds_to_100%"], ".3g"),
                best,
                f"{regret} / {pruned}",
                cell(m["steps"], ".0f"),
                cell(m["wall"], ".3g"),
            ]
        )
    dims = result["dims"]
    return (
        f"N, D_in, H, D_out = {dims['N']}, {dims['D_in']}, {dims['H']}, {dims['D_out']}; "
        f"{len(args.seed_list)} search seeds {args.seed_list}, {args.trials} trials each, "
        f"{PARALLEL} at a time; Optuna and Ray report every {args.report_every} steps.\n"
        f"Reference: a {grid['jobs']}-job grid (13 lr x 4 x 3) through trainq in "
        f"{grid['wall']:.1f} s, best final loss {grid['reference']:.6g} "
        f"({grid['best']['optimizer']}, {grid['best']['init']}, lr {grid['best']['lr']:g}); "
        f"grid steps {grid['nominal_steps']} ({grid['steps']} trained, diverged jobs stop).\n"
        f"Medians over seeds (range); [k/n]: reached in k of n seeds (never counts as infinite "
        f"in the median); pruning regret over all seeds, exact (trained to the end offline in "
        f"{result['offline_seconds']:.0f} s).\n\n" + table(headers, rows)
    )
