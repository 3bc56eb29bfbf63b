"""What the pages draw: the compare page's series, and the sweep page's optimizer x lr heatmap
cells, curve series and legend (in the pictures' colours and labels, curve_labels.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.api.page_queries import factor_value
from service.jobs import job_to_dict
from service.models import Job
from service.results.curve_labels import colour, curve_labels, label_text, level_styles
from service.results.sweep_plots import DIVERGED_TEXT, heatmap_cells, level_text
from service.sweeps.levels import level_key

# Colour buckets of the heatmap (CSS classes heat-0 .. heat-8): the page's style sheet holds
# the colours, since its content security policy refuses inline styles.
BUCKETS = 9
MAX_LEGEND = 12


@dataclass(frozen=True)
class HeatCell:
    """One cell: its text, its colour bucket (None: no finished job there) and its tooltip;
    `diverged`: every run of the cell diverged (no colour, the text says so)."""

    text: str
    bucket: int | None
    title: str
    diverged: bool = False


@dataclass(frozen=True)
class Heatmap:
    """The optimizer x lr table of mean final log10 loss, rows and columns in level order."""

    rows: list[str]
    columns: list[str]
    cells: list[list[HeatCell]]
    share: float | None
    binned: bool


def heatmap(table: dict[str, Any]) -> Heatmap | None:
    """The heatmap of a factor table, or None when the sweep does not vary both factors."""
    pair = heatmap_cells(table)
    if pair is None or not pair["cells"]:
        return None
    optimizer, lr = table["factors"]["optimizer"], table["factors"]["lr"]
    means = {(c["row"], c["column"]): c for c in pair["cells"]}
    # The colours span the cells where some run did not diverge.
    coloured = [c["mean"] for c in pair["cells"] if not c["all_diverged"]] or [0.0]
    low = min(coloured)
    span = max(coloured) - low
    rows, columns = pair["rows"], pair["columns"]
    grid = []
    for row in rows:
        line = []
        for column in columns:
            where = f"optimizer={level_text(optimizer, row)}, lr={level_text(lr, column)}"
            cell = means.get((row, column))
            if cell is None:
                line.append(HeatCell("-", None, f"{where}: no finished job"))
                continue
            if cell["all_diverged"]:
                title = f"{where}: all {cell['n']} run(s) diverged"
                line.append(HeatCell(DIVERGED_TEXT, None, title, diverged=True))
                continue
            bucket = round((cell["mean"] - low) / span * (BUCKETS - 1)) if span > 0 else 0
            loss = label_text(10 ** cell["mean"], ".3g")
            title = f"{where}: mean log10 loss {cell['mean']:.2f} (loss {loss}), n={cell['n']}"
            line.append(HeatCell(f"{cell['mean']:.2f}", bucket, title))
        grid.append(line)
    return Heatmap(
        rows=[level_text(optimizer, r) for r in rows],
        columns=[level_text(lr, c) for c in columns],
        cells=grid,
        share=pair["share"],
        binned=lr["binned"] is not None,
    )


def compare_series(jobs: Sequence[Job]) -> list[dict]:
    """Per compared job its id, legend label, colour and status, as its compare picture draws it."""
    labels = curve_labels([job_to_dict(job) for job in jobs])
    return [
        {"id": job.id, "label": label, "color": colour(i), "status": job.status}
        for i, (job, label) in enumerate(zip(jobs, labels, strict=True))
    ]


def curve_series(jobs: Sequence[Job], by: str | None) -> tuple[list[dict], list[dict]]:
    """Per job its id, status and colour (by its level of `by`, levels in order); the legend."""
    styles = level_styles(by, (factor_value(job, by) for job in jobs)) if by else {}
    series = [
        {
            "id": job.id,
            "status": job.status,
            "color": styles[level_key(factor_value(job, by))].colour if by else colour(0),
        }
        for job in jobs
    ]
    legend = [{"label": style.label, "color": style.colour} for style in styles.values()]
    # A searched factor has a level per job: a legend of them all would say nothing.
    return series, legend if len(legend) <= MAX_LEGEND else []
