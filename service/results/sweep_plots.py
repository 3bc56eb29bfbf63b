"""A sweep's pictures: curves by a factor (pruned ones faded, rungs marked), its level panel,
the optimizer x lr heatmap, and the best-so-far curve."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from service.results.curve_labels import level_styles
from service.results.plots import (
    DIVERGED_MARK,
    DPI,
    Curve,
    clip_to_runs_that_did_not_diverge,
    decorate_axes,
    draw_curve,
    short,
)
from service.sweeps.factors import factor_table
from service.sweeps.levels import level_key

PRUNED_ALPHA = 0.2
HEATMAP_PAIR = ["optimizer", "lr"]
# What a level or cell whose runs all diverged shows instead of a number.
DIVERGED_TEXT = "diverged"


def level_text(factor: dict[str, Any], key: str) -> str:
    """A level as a label writes it: a bin by its label, a number short."""
    level = factor["levels"][key]
    return str(level.get("label") or short(level["value"]))


def level_statistics(
    jobs: Sequence[dict[str, Any]], by: str
) -> list[tuple[Any, float, float, int]]:
    """Per level of `by`, in level order: mean and std of the final log10 loss, and the count.

    The levels are /factors' own (`service.sweeps.factors.factor_table`): a diverged job ranks
    below every loss the sweep has seen, a pruned one left out, a searched lr binned by decade,
    so the two agree.
    """
    return level_rows(factor_table(jobs, [by])["factors"].get(by))


def level_rows(factor: dict[str, Any] | None) -> list[tuple[Any, float, float, int]]:
    """One factor of a factor table as (level, mean, std, n) rows, in level order."""
    if factor is None:
        return []
    rows = []
    for key in factor["order"]:
        level = factor["levels"][key]
        shown = level.get("label", level["value"])
        rows.append((shown, level["mean"], level["std"] or 0.0, level["n"]))
    return rows


def heatmap_cells(table: dict[str, Any]) -> dict[str, Any] | None:
    """The optimizer x lr interaction of a factor table, or None when the sweep varies less."""
    return next((i for i in table["interactions"] if i["factors"] == HEATMAP_PAIR), None)


def _faded_curves(
    axes: Any, curves: Sequence[Curve], by: str, rungs: Sequence[int]
) -> tuple[int, list[Any]]:
    """Curves coloured by level of `by` as the sweep page colours them, pruned ones faded; the
    rungs as dotted lines."""
    styles = level_styles(by, (c.job.get(by) for c in curves))
    pruned = 0
    for curve in curves:
        level = styles[level_key(curve.job.get(by))]
        faded = curve.job.get("status") == "pruned"
        pruned += faded
        style = {"color": level.colour, "lw": 0.8 if faded else 1.0}
        style["alpha"] = PRUNED_ALPHA if faded else 0.7
        draw_curve(axes, curve.steps, curve.losses, gid="pruned" if faded else "curve", **style)
    shown = [
        Line2D([], [], color=level.colour, lw=1.5, label=level.label) for level in styles.values()
    ]
    shown = shown if len(shown) <= 20 else []
    if pruned:
        faded_handle = Line2D([], [], color="grey", alpha=PRUNED_ALPHA * 2, label="pruned (faded)")
        shown.append(faded_handle)
    for n, step in enumerate(rungs):
        axes.axvline(step, color="0.35", ls=":", lw=1, gid="rung")
        if n == 0:
            rung_text = "rungs at " + ", ".join(str(r) for r in rungs)
            shown.append(Line2D([], [], color="0.35", ls=":", label=rung_text))
    return pruned, shown


def _heatmap(axes: Any, figure: Figure, table: dict[str, Any], pair: dict[str, Any]) -> None:
    """Mean final log10 loss per (optimizer, lr) cell, each cell's value written on it; a cell
    whose runs all diverged left out of the colours and written "diverged"."""
    rows, columns = pair["rows"], pair["columns"]
    means = np.full((len(rows), len(columns)), np.nan)
    for cell in pair["cells"]:
        if not cell["all_diverged"]:
            means[rows.index(cell["row"]), columns.index(cell["column"])] = cell["mean"]
    image = axes.imshow(np.ma.masked_invalid(means), cmap="viridis", aspect="auto")
    for cell in pair["cells"]:
        i, j = rows.index(cell["row"]), columns.index(cell["column"])
        text, colour = (
            (DIVERGED_TEXT, "crimson") if cell["all_diverged"] else (f"{cell['mean']:.2f}", "w")
        )
        axes.text(j, i, text, ha="center", va="center", color=colour, fontsize=8, gid="cell")
    optimizer, lr = table["factors"]["optimizer"], table["factors"]["lr"]
    axes.set_yticks(range(len(rows)), [level_text(optimizer, k) for k in rows], fontsize="small")
    axes.set_xticks(
        range(len(columns)),
        [level_text(lr, k) for k in columns],
        fontsize="small",
        rotation=45 if len(columns) > 4 else 0,
    )
    axes.set_xlabel("lr")
    axes.set_ylabel("optimizer")
    share = pair["share"]
    shown = "" if share is None else f" (interaction {share:.0%})"
    axes.set_title(f"mean final log10 loss{shown}")
    figure.colorbar(image, ax=axes, label="mean log10 loss")


def _level_panel(panel: Any, factor: dict[str, Any] | None, by: str) -> None:
    """Each level's mean and std; a level whose runs all diverged a mark, labelled so."""
    stats = level_rows(factor)
    diverged = [factor["levels"][key]["all_diverged"] for key in factor["order"]] if factor else []
    kept = [i for i in range(len(stats)) if not diverged[i]]
    lost = [i for i in range(len(stats)) if diverged[i]]
    panel.errorbar(
        kept, [stats[i][1] for i in kept], yerr=[stats[i][2] for i in kept], fmt="o", capsize=4
    )
    if lost:
        panel.plot(lost, [stats[i][1] for i in lost], gid="diverged", **DIVERGED_MARK)
    labels = [
        f"{short(s[0])}\n(n={s[3]}{', ' + DIVERGED_TEXT if diverged[i] else ''})"
        for i, s in enumerate(stats)
    ]
    panel.set_xticks(range(len(stats)), labels, fontsize="small")
    panel.set_xlabel(by)
    panel.set_ylabel("final log10 loss (mean ± std)")
    panel.set_title("factor panel (diverged = worst loss seen + 1 decade)")


def sweep_figure(
    sweep_id: int,
    curves: Sequence[Curve],
    jobs: Sequence[dict[str, Any]],
    by: str,
    size: tuple[int, int],
    *,
    factors: Sequence[str] = (),
    rungs: Sequence[int] = (),
) -> Figure:
    """The sweep's curves by one factor, that factor's level panel, and the optimizer x lr
    heatmap when the sweep varies both."""
    width, height = size
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    table = factor_table(jobs, list(dict.fromkeys([*factors, by])))
    pair = heatmap_cells(table)
    ratios = (2, 1, 1.2) if pair else (2, 1)
    panels = figure.subplots(1, len(ratios), width_ratios=ratios)
    curves_axes, panel = panels[0], panels[1]
    pruned, handles = _faded_curves(curves_axes, curves, by, rungs)
    decorate_axes(curves_axes)
    handles += clip_to_runs_that_did_not_diverge(curves_axes, curves)
    faded = f", {pruned} pruned (faded)" if pruned else ""
    drawn = f", {len(curves)} drawn" if len(curves) < len(jobs) else ""
    curves_axes.set_title(f"sweep #{sweep_id}: {len(jobs)} jobs by {by}{faded}{drawn}")
    if handles:
        curves_axes.legend(handles=handles, fontsize="small", loc="best")
    _level_panel(panel, table["factors"].get(by), by)
    panel.grid(True, alpha=0.3)
    if pair:
        _heatmap(panels[2], figure, table, pair)
    return figure


def best_so_far_figure(sweep_id: int, points: Sequence[dict[str, Any]], size: tuple) -> Figure:
    """Best final loss against training steps spent; every ended job's final loss as a dot,
    pruned and other unfinished ends as faded ticks along the bottom."""
    width, height = size
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.set_xlabel("training steps spent (all ended jobs, pruned ones included)")
    axes.set_ylabel("best final loss (log scale)")
    axes.set_title(f"sweep #{sweep_id}: best so far over {len(points)} ended jobs")
    axes.grid(True, which="both", alpha=0.3)
    best = [(p["spent"], p["best"]) for p in points if p["best"] is not None]
    if not best:
        axes.text(0.5, 0.5, "no job has succeeded yet", ha="center", transform=axes.transAxes)
        return figure
    xs, ys = zip(*best, strict=True)
    axes.plot(xs, ys, drawstyle="steps-post", lw=2, label="best so far", gid="best")
    finals = [(p["spent"], p["final_loss"]) for p in points if p["final_loss"] is not None]
    axes.plot(*zip(*finals, strict=True), "o", ms=4, alpha=0.5, label="succeeded job")
    others = [p["spent"] for p in points if p["final_loss"] is None]
    if others:
        axes.plot(
            others,
            [0.02] * len(others),
            "|",
            ms=10,
            color="grey",
            alpha=0.5,
            transform=axes.get_xaxis_transform(),
            label="pruned / diverged / other end",
        )
    axes.set_yscale("log")
    axes.legend(fontsize="small", loc="best")
    return figure
