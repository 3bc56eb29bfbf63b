"""Legend labels for overlaid curves: each job named by the fields that differ between them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


# The job fields (API names) a label may name, in the order it names them: factors first.
LABEL_FIELDS = (
    "stage",
    "optimizer",
    "init",
    "lr",
    "momentum",
    "weight_decay",
    "seed",
    "iterations",
    "N",
    "D_in",
    "H",
    "D_out",
    "dtype",
    "device",
    "name",
    "tags",
)


def label_text(value: Any, float_format: str = "g") -> str:
    """A field's value as a label writes it: floats in float_format, lists comma-joined."""
    if isinstance(value, float):
        return format(value, float_format)
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


def differing_fields(jobs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The label fields whose values are not the same in every job (API-named dicts)."""
    first = jobs[0] if jobs else {}
    return [f for f in LABEL_FIELDS if any(job.get(f) != first.get(f) for job in jobs)]


def curve_labels(jobs: Sequence[Job]) -> list[str]:
    """One label per job: `field=value` for every differing field, or the job id alone."""
    specs = [job_spec(job) for job in jobs]
    fields = differing_fields(specs)
    labels = []
    for job, spec in zip(jobs, specs, strict=True):
        parts = [f"{field}={label_text(spec[field])}" for field in fields]
        labels.append(", ".join(parts) if parts else f"job {job.id}")
    return labels


def colour(index: int) -> str:
    """The curve colour of the index-th series."""
    return PALETTE[index % len(PALETTE)]
