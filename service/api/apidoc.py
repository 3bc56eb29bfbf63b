"""The OpenAPI registry: each view carries its own doc, written next to it by `documented`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from service.api.schemas import ErrorBody

View = TypeVar("View", bound=Callable[..., Any])
# A response: a pydantic model (JSON), or media type -> model (None: not JSON, e.g. a PNG).
Response = type[BaseModel] | Mapping[str, type[BaseModel] | None]


@dataclass(frozen=True)
class Param:
    """One query or path parameter."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    where: str = "query"
    required: bool = False


@dataclass(frozen=True)
class EndpointDoc:
    """What the OpenAPI document says about one view."""

    summary: str
    tag: str
    params: Sequence[Param] = ()
    request: type[BaseModel] | None = None
    responses: Mapping[int, Response] = field(default_factory=dict)
    # The token scope it needs when tokens are configured (None: read for GET, submit else).
    scope: str | None = None


def documented(
    summary: str,
    *,
    tag: str,
    params: Sequence[Param] = (),
    request: type[BaseModel] | None = None,
    responses: Mapping[int, Response] | None = None,
    errors: Sequence[int] = (422,),
    scope: str | None = None,
) -> Callable[[View], View]:
    """Attach an OpenAPI description to a view; error statuses answer with ErrorBody."""
    answers: dict[int, Response] = dict(responses or {})
    for status in errors:
        answers.setdefault(status, ErrorBody)
    doc = EndpointDoc(summary, tag, tuple(params), request, answers, scope)

    def attach(view: View) -> View:
        # A function attribute, read back by build_document with getattr; mypy knows no such field.
        view.apidoc = doc  # type: ignore[attr-defined]
        return view

    return attach


# What every integer parameter fits in (params.int_arg's range), and what no text may hold.
MAX_INT_PARAM = 2**31 - 1
NO_NUL = "^[^\\x00]*$"


def int_param(name: str, description: str = "", **bounds: int) -> Param:
    """An integer query parameter (within [0, 2**31-1] unless its bounds say narrower)."""
    schema = {"type": "integer", "minimum": 0, "maximum": MAX_INT_PARAM, **bounds}
    return Param(name, schema, description)


def str_param(name: str, description: str = "", enum: Sequence[str] | None = None) -> Param:
    """A string query parameter, optionally one of `enum` (never empty: see params._given)."""
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = list(enum)
    else:
        schema["pattern"] = NO_NUL
    return Param(name, schema, description)


def list_param(name: str, description: str, choices: Sequence[str]) -> Param:
    """A comma-separated query parameter of `choices`, empty items ignored (as params.list_arg)."""
    one = "|".join(re.escape(choice) for choice in choices)
    schema = {"type": "string", "pattern": f"^(?:(?:{one})?,)*(?:{one})?$"}
    return Param(name, schema, description)


def path_id(name: str, what: str) -> Param:
    """An integer id in the path."""
    return Param(name, {"type": "integer", "minimum": 1}, f"the {what}'s id", "path", True)
