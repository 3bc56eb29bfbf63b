"""A request's JSON body: nesting bounded, every number finite, a 4xx naming what is wrong."""

from __future__ import annotations

import json
import math

from flask import request

from service.api.extensions import ApiError

# Deeper than any request trainq takes (a sweep's search space is 5 levels); the cap keeps
# deep bodies from the parser's recursion limit and from every later walk over the body.
MAX_DEPTH = 32


def too_deep() -> ApiError:
    """The 400 of a body nested past MAX_DEPTH."""
    return ApiError(400, "malformed_body", f"the body nests deeper than {MAX_DEPTH} levels")


def parse_json(raw: bytes) -> object | None:
    """The body's JSON document, None when it is not JSON, or a 4xx for a deep or NaN body."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise too_deep() from None
    except ValueError:  # not JSON, or not UTF-8/16/32
        return None
    _check(data, [], 0)
    return data


def _check(value: object, path: list[str], depth: int) -> None:
    # NaN and Infinity are not JSON numbers (nor is 1e999, which parses to inf): PostgreSQL's
    # JSON refuses them, and a stored one makes every later answer that shows it invalid JSON.
    if depth > MAX_DEPTH:
        raise too_deep()
    if isinstance(value, float) and not math.isfinite(value):
        field = ".".join(path) or None
        where = field or "the body"
        raise ApiError(422, "invalid_field", f"{where}: numbers must be finite", field)
    if isinstance(value, dict):
        for key, item in value.items():
            _check(item, [*path, key], depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, [*path, str(index)], depth + 1)


def json_body() -> object:
    """The request's JSON body, or a 415 or 400 naming what is wrong with it."""
    # A browser form can send text/plain anywhere without asking: only JSON is read as a body.
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type: the body must be application/json, not {request.mimetype or 'none'}",
            "Content-Type",
        )
    data = parse_json(request.get_data())
    if data is None:
        raise ApiError(400, "malformed_body", "the body must be a JSON document")
    return data
