"""Query-string parameters, validated at the edge with 422 naming the parameter."""

from __future__ import annotations

import math
from typing import overload

from flask import request

from service.api.extensions import invalid_parameter


def _given(name: str) -> str | None:
    """The query parameter's text, or None when it is absent.

    An empty value (`?limit=`) is not absent: it is text that is not a number or a choice,
    so the caller answers 422 for it rather than quietly using the default.
    """
    return request.args.get(name)


@overload
def int_arg(name: str, default: int, *, low: int = 0, high: int = 2**31 - 1) -> int: ...
@overload
def int_arg(
    name: str, default: None = None, *, low: int = 0, high: int = 2**31 - 1
) -> int | None: ...
def int_arg(
    name: str, default: int | None = None, *, low: int = 0, high: int = 2**31 - 1
) -> int | None:
    """An integer query parameter within [low, high], or the default when absent."""
    raw = _given(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_parameter(name, "must be an integer") from None
    if not low <= value <= high:
        raise invalid_parameter(name, f"must be in [{low}, {high}]")
    return value


def float_arg(name: str) -> float | None:
    """A finite float query parameter, or None when absent."""
    raw = _given(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise invalid_parameter(name, "must be a number") from None
    if not math.isfinite(value):
        raise invalid_parameter(name, "must be finite")
    return value


def choice_arg(name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
    """A query parameter that must be one of `choices`."""
    raw = _given(name)
    if raw is None:
        return default
    if raw not in choices:
        raise invalid_parameter(name, f"must be one of {', '.join(choices)}")
    return raw


def list_arg(name: str, choices: tuple[str, ...] | None = None) -> list[str]:
    """A comma-separated or repeated query parameter."""
    values = [v for raw in request.args.getlist(name) for v in raw.split(",") if v]
    if choices is not None:
        for value in values:
            if value not in choices:
                raise invalid_parameter(name, f"{value!r} is not one of {', '.join(choices)}")
    return values


def page_fields(total: int, limit: int, offset: int) -> dict[str, int | None]:
    """An offset page's paging fields: the total, the page asked for and where the next starts."""
    following = offset + limit if offset + limit < total else None
    return {"total": total, "limit": limit, "offset": offset, "next_offset": following}
