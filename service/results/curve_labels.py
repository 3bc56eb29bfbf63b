"""Legend labels for overlaid curves: each job named by the fields that differ between them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.jobs import job_spec
from service.models import Job

# Colour-blind-safe and distinct on white (Okabe-Ito, then Tableau), cycled past ten.
PALETTE = (
    "#0072b2",
    "#d55e00",
    "#009e73",
    "#cc79a7",
    "#e69f00",
    "#56b4e9",
    "#000000",
    "#8c564b",
    "#7f7f7f",
    "#bcbd22",
)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


def differing_fields(jobs: Sequence[Job]) -> list[str]:
    """The job fields (API names) whose values are not the same for every job, in spec order."""
    specs = [job_spec(job) for job in jobs]
    if len(specs) < 2:
        return []
    return [field for field in specs[0] if any(spec[field] != specs[0][field] for spec in specs)]


def curve_labels(jobs: Sequence[Job]) -> list[str]:
    """One label per job: `field=value` for every differing field, or the job id alone."""
    fields = differing_fields(jobs)
    labels = []
    for job in jobs:
        spec = job_spec(job)
        parts = [f"{field}={_text(spec[field])}" for field in fields]
        labels.append(", ".join(parts) if parts else f"job {job.id}")
    return labels


def colour(index: int) -> str:
    """The curve colour of the index-th series."""
    return PALETTE[index % len(PALETTE)]
