"""A factor's levels: their order (numbers by value) and the decade bins of continuous factors.

Order: numbers by value, then everything else by its JSON text, so lr levels read 1e-06, 1e-05,
0.0001, 0.001 and not as text sorts them. Bins: a numeric factor with more than `MAX_LEVELS`
distinct values, all positive and finite (a searched lr, say), is binned by decade: the value v
falls in bin k = floor(log10 v), labelled "1e{k}..1e{k+1}" (e.g. "1e-4..1e-3"), with its lower
edge as the bin's value; a factor with fewer distinct values keeps each value as a level.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_LEVELS = 8
# log10 of an exact power of ten may land a hair below the integer: floor must not drop a decade.
_EPSILON = 1e-9


def level_key(value: Any) -> str:
    """A level as a JSON object key: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def level_sort_key(value: Any) -> tuple[int, Any]:
    """The one order of levels everywhere: numbers by value first, then the rest as text."""
    if is_number(value):
        return (0, value)
    return (1, level_key(value))


def ordered(values: Iterable[Any]) -> list[Any]:
    """Distinct values in level order."""
    distinct = {level_key(v): v for v in values}
    return sorted(distinct.values(), key=level_sort_key)


def decade(value: float) -> int:
    """The decade k with 10**k <= value < 10**(k+1)."""
    return math.floor(math.log10(value) + _EPSILON)


def decade_label(k: int) -> str:
    """'1e-4..1e-3' for k = -4."""
    return f"1e{k}..1e{k + 1}"


@dataclass(frozen=True)
class Levels:
    """How one factor's values map to levels: themselves, or their decade bins."""

    binned: bool

    def key(self, value: Any) -> str:
        """The level a value belongs to, as a JSON object key."""
        return decade_label(decade(value)) if self.binned else level_key(value)

    def value(self, value: Any) -> Any:
        """What stands for the level: the value itself, or its bin's lower edge."""
        return 10.0 ** decade(value) if self.binned else value

    def describe(self, value: Any) -> dict[str, Any]:
        """The level's value, and for a bin its edges."""
        if not self.binned:
            return {"value": value}
        k = decade(value)
        return {"value": 10.0**k, "low": 10.0**k, "high": 10.0 ** (k + 1)}


def levels_of(values: Iterable[Any]) -> Levels:
    """Decade bins for a continuous factor (see the module docstring), else the values."""
    distinct = {level_key(v): v for v in values}
    continuous = len(distinct) > MAX_LEVELS and all(
        is_number(v) and math.isfinite(v) and v > 0 for v in distinct.values()
    )
    return Levels(binned=continuous)
