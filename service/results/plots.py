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
from matplotlib.lines import Line2D

from service.results.curve_labels import colour, curve_labels, label_text

DPI = 100
# A diverged run's mark on the top edge of a loss axis clipped to the runs that did not diverge.
DIVERGED_MARK: dict[str, Any] = {"marker": "v", "color": "crimson", "ms": 7, "ls": "none"}
# Log-scale headroom around the clipped range: a tenth of a decade each side.
CLIP_MARGIN = 10**0.1


@dataclass(frozen=True)
class Curve:
    """One job's curve: its fields (for labels) and its (possibly downsampled) history."""

    job: dict[str, Any]
    steps: np.ndarray
    losses: np.ndarray


def short(value: Any) -> str:
    """A value as a legend writes it: floats to three significant digits."""
    return label_text(value, ".3g")


def _title(prefix: str, ids: Sequence[int], limit: int = 12) -> str:
    shown = ", ".join(f"#{i}" for i in ids[:limit])
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return f"{prefix} {shown}{more}"


def draw_curve(axes: Any, steps: np.ndarray, losses: np.ndarray, **style: Any) -> None:
    """One curve, gaps where the loss is not a positive finite number (log scale)."""
    shown = np.where(np.isfinite(losses) & (losses > 0), losses, np.nan)
    axes.plot(steps, shown, **style)


def decorate_axes(axes: Any) -> None:
    """Log-scale loss against step, with a light grid."""
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (log scale)")
    axes.grid(True, which="both", alpha=0.3)


def _diverged_step(curve: Curve) -> int:
    """The step whose loss was not a number (the history's last step where it is unknown)."""
    step = curve.job.get("diverged_at")
    if step is None:
        return int(curve.steps[-1]) if len(curve.steps) else 0
    return int(step)


def clip_to_runs_that_did_not_diverge(axes: Any, curves: Sequence[Curve]) -> list[Line2D]:
    """The y axis on the finite range of the runs that did not diverge (a spike to 1e27 would
    flatten them), each diverged run marked on its top edge at the step it diverged; the
    legend's handle for the marks (none without a diverged run)."""
    diverged = [c for c in curves if c.job.get("status") == "diverged"]
    if not diverged:
        return []
    kept = [c.losses for c in curves if c.job.get("status") != "diverged"]
    values = np.concatenate(kept) if kept else np.array([])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size:
        axes.set_ylim(values.min() / CLIP_MARGIN, values.max() * CLIP_MARGIN)
    steps = [_diverged_step(c) for c in diverged]
    # x in data, y in axes coordinates: the marks sit on the top edge whatever the scale.
    axes.plot(
        steps,
        [1.0] * len(steps),
        transform=axes.get_xaxis_transform(),
        clip_on=False,
        gid="diverged",
        **DIVERGED_MARK,
    )
    label = f"diverged ({len(diverged)}): marked on the top edge"
    return [Line2D([], [], label=label, **DIVERGED_MARK)]


def curves_figure(curves: Sequence[Curve], width: int, height: int) -> Figure:
    """Every curve on one log-scale axes in the pages' colours, the legend naming what differs."""
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    labels = curve_labels([c.job for c in curves])
    for i, (curve, label) in enumerate(zip(curves, labels, strict=True)):
        draw_curve(axes, curve.steps, curve.losses, label=label, color=colour(i), lw=1.2)
    decorate_axes(axes)
    ids = [c.job["id"] for c in curves]
    axes.set_title(_title("loss of job" + ("s" if len(ids) > 1 else ""), ids))
    if 1 < len(curves) <= 20:
        axes.legend(fontsize="small", loc="best")
    return figure


def render(figure: Figure, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt)
    return buffer.getvalue()
