"""Loss-curve pictures with matplotlib's object API (no pyplot state, so threads may share it)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything could import pyplot: no display on a server

import numpy as np
from matplotlib.figure import Figure

from service.results.curve_labels import differing_fields, label_text
from service.sweeps.factors import outcomes

DPI = 100


@dataclass(frozen=True)
class Curve:
    """One job's curve: its fields (for labels) and its (possibly downsampled) history."""

    job: dict[str, Any]
    steps: np.ndarray
    losses: np.ndarray


def _short(value: Any) -> str:
    return label_text(value, ".3g")


def curve_label(job: dict[str, Any], fields: Sequence[str]) -> str:
    """'#id field=value ...' naming only what differs."""
    parts = [f"#{job['id']}"] + [f"{f}={_short(job.get(f))}" for f in fields]
    return " ".join(parts)


def _title(prefix: str, ids: Sequence[int], limit: int = 12) -> str:
    shown = ", ".join(f"#{i}" for i in ids[:limit])
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return f"{prefix} {shown}{more}"


def _draw(axes: Any, steps: np.ndarray, losses: np.ndarray, **style: Any) -> None:
    shown = np.where(np.isfinite(losses) & (losses > 0), losses, np.nan)
    axes.plot(steps, shown, **style)


def _decorate(axes: Any) -> None:
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (log scale)")
    axes.grid(True, which="both", alpha=0.3)


def curves_figure(curves: Sequence[Curve], width: int, height: int) -> Figure:
    """Every curve on one log-scale axes, the legend naming what differs between them."""
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    fields = differing_fields([c.job for c in curves])
    for curve in curves:
        _draw(axes, curve.steps, curve.losses, label=curve_label(curve.job, fields), lw=1.2)
    _decorate(axes)
    ids = [c.job["id"] for c in curves]
    axes.set_title(_title("loss of job" + ("s" if len(ids) > 1 else ""), ids))
    if 1 < len(curves) <= 20:
        axes.legend(fontsize="small", loc="best")
    return figure


def level_statistics(
    jobs: Sequence[dict[str, Any]], by: str
) -> list[tuple[Any, float, float, int]]:
    """Per level of `by`: mean and std of the final log10 loss, and the job count.

    Jobs are scored as the factor table scores them (`service.factors.outcomes`): a diverged
    job is the worst outcome, not missing data, so the panel and /factors agree.
    """
    scored, _ = outcomes(jobs)
    levels: dict[Any, list[float]] = {}
    for job, score in scored:
        levels.setdefault(job.get(by), []).append(score)
    rows = []
    for level in sorted(levels, key=lambda v: (v is None, str(type(v)), v)):
        scores = np.array(levels[level])
        rows.append((level, float(scores.mean()), float(scores.std()), len(scores)))
    return rows


def sweep_figure(
    sweep_id: int, curves: Sequence[Curve], jobs: Sequence[dict[str, Any]], by: str, size: tuple
) -> Figure:
    """The sweep's curves coloured by one factor, and a panel of that factor's levels."""
    width, height = size
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    curves_axes, panel = figure.subplots(1, 2, width_ratios=(2, 1))
    levels = sorted({repr(c.job.get(by)) for c in curves})
    palette = matplotlib.colormaps["tab10" if len(levels) <= 10 else "viridis"]
    colour = {
        lv: palette(i / max(1, len(levels) - 1) if len(levels) > 10 else i)
        for i, lv in enumerate(levels)
    }
    labelled: set[str] = set()
    for curve in curves:
        level = repr(curve.job.get(by))
        label = f"{by}={_short(curve.job.get(by))}" if level not in labelled else None
        labelled.add(level)
        _draw(
            curves_axes,
            curve.steps,
            curve.losses,
            color=colour[level],
            lw=1,
            alpha=0.7,
            label=label,
        )
    _decorate(curves_axes)
    curves_axes.set_title(f"sweep #{sweep_id}: {len(curves)} jobs by {by}")
    if labelled and len(levels) <= 20:
        curves_axes.legend(fontsize="small", loc="best")
    stats = level_statistics(jobs, by)
    positions = np.arange(len(stats))
    panel.errorbar(
        positions,
        [s[1] for s in stats],
        yerr=[s[2] for s in stats],
        fmt="o",
        capsize=4,
    )
    panel.set_xticks(positions, [f"{_short(s[0])}\n(n={s[3]})" for s in stats], fontsize="small")
    panel.set_xlabel(by)
    panel.set_ylabel("final log10 loss (mean ± std)")
    panel.set_title("factor panel (diverged = worst + 1 decade)")
    panel.grid(True, alpha=0.3)
    return figure


def render(figure: Figure, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt)
    return buffer.getvalue()
