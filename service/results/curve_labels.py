"""The curves' one palette and legend labels, for the pages and the pictures alike: compared
jobs named by the fields that differ between them, a sweep's levels by factor and value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.sweeps.levels import level_key, ordered

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


def curve_labels(jobs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One label per job (API-named, with its id): `field=value` for every differing field,
    or the job id alone."""
    fields = differing_fields(jobs)
    labels = []
    for job in jobs:
        parts = [f"{field}={label_text(job.get(field))}" for field in fields]
        labels.append(", ".join(parts) if parts else f"job {job['id']}")
    return labels


def colour(index: int) -> str:
    """The curve colour of the index-th series."""
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class LevelStyle:
    """How one level of a sweep's factor is drawn: its legend label and its colour."""

    label: str
    colour: str


def level_styles(by: str, values: Iterable[Any]) -> dict[str, LevelStyle]:
    """The distinct levels of `by` among `values` by key (level_key), in level order: each
    labelled `by=value` (three significant digits), coloured by the palette in that order."""
    return {
        level_key(value): LevelStyle(f"{by}={label_text(value, '.3g')}", colour(i))
        for i, value in enumerate(ordered(values))
    }
