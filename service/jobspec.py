"""The job request: every field of the spec's job table, its defaults per stage and its caps."""

from __future__ import annotations

import difflib
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from service.choices import (
    HAND_WRITTEN_STAGES,
    MAX_SEED,
    MOMENTUM_OPTIMIZERS,
    DeviceName,
    DtypeName,
    InitName,
    OptimizerName,
    StageName,
)

# Re-exported: the API modules import these from here.
from service.choices import INITS as INITS
from service.choices import OPTIMIZERS as OPTIMIZERS
from service.choices import STAGES as STAGES
from service.config import Limits  # re-exported: the caps validate_job applies

DIMENSIONS = ("N", "D_in", "H", "D_out")

# Control characters (NUL above all: PostgreSQL cannot store it in text) are refused.
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s,\x00-\x1f\x7f]+$")]


# A field given as null is one left out: its default applies.
NONE = {"type": "null"}


def _document_the_rules(schema: dict[str, Any]) -> None:
    """Add to the job's JSON Schema the rules of `_check_rules` that JSON Schema can state."""
    # So the document says what validates; tests/service/api/test_openapi.py holds the two
    # together, and the caps on products stay in _check_rules alone (no JSON Schema for them).
    schema["allOf"] = [
        {
            "if": {"properties": {"stage": {"enum": list(HAND_WRITTEN_STAGES)}}},
            "then": {
                "properties": {"optimizer": {"enum": ["sgd", None]}, "weight_decay": NONE},
            },
        },
        {
            "if": {"required": ["momentum"], "properties": {"momentum": {"not": NONE}}},
            "then": {
                "required": ["optimizer"],
                "properties": {"optimizer": {"enum": list(MOMENTUM_OPTIMIZERS)}},
            },
        },
    ]


class JobRequest(BaseModel):
    """A job as submitted: unknown fields refused, no silent type coercion."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra=_document_the_rules
    )

    stage: StageName
    optimizer: OptimizerName | None = None
    momentum: Annotated[float, Field(ge=0, lt=1)] | None = None
    weight_decay: Annotated[float, Field(ge=0, le=10)] | None = None
    init: InitName | None = None
    lr: Annotated[float, Field(gt=0, le=10)] | None = None
    # The schema's ceiling is the default cap; a deployment's own cap is checked after.
    iterations: Annotated[int, Field(ge=1, le=Limits.max_iterations)] = 500
    N: Annotated[int, Field(ge=1)] = 64
    D_in: Annotated[int, Field(ge=1)] = 1000
    H: Annotated[int, Field(ge=1)] = 100
    D_out: Annotated[int, Field(ge=1)] = 10
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None
    device: DeviceName = "auto"
    dtype: DtypeName = "float32"
    name: Name | None = None
    tags: Annotated[list[Tag], Field(max_length=32)] = Field(default_factory=list)


class SpecError(Exception):
    """A request that names a field and says what is wrong with it."""

    def __init__(
        self, field: str | None, message: str, details: list[dict[str, Any]] | None = None
    ):
        super().__init__(message)
        self.field = field
        self.message = message
        self.details = details or [{"field": field, "message": message}]


def work_flops(iterations: int, n: int, d_in: int, h: int, d_out: int) -> float:
    """Floating-point operations of a whole job: five matrix products per iteration."""
    # Forward x@w1 and backward x.T@grad_h cost N*D_in*H each; the three products
    # around w2 cost N*H*D_out each; a multiply-add is two operations.
    return float(iterations) * 2.0 * (2 * n * d_in * h + 3 * n * h * d_out)


def tensor_elements(n: int, d_in: int, h: int, d_out: int) -> int:
    """Elements a job holds at once: data, weights, gradients, optimizer state, activations."""
    return n * d_in + 2 * n * d_out + 4 * (d_in * h + h * d_out) + 3 * n * h


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """ " (did you mean `optimizer`?)" for a near miss among names, else ""."""
    close = difflib.get_close_matches(word, list(names), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def spec_error(
    error: pydantic.ValidationError, known: Mapping[str, Iterable[str]] | None = None
) -> SpecError:
    """A pydantic error as a SpecError: the first problem's path, and every problem in details.

    `known`: the keys allowed under each path ("" the top), for the near miss of an unknown one.
    """
    details = []
    for item in error.errors(include_url=False):
        # A bad key of a mapping is named by its path, as a bad value is ("grid.bogus").
        parts = [str(part) for part in item["loc"] if part != "[key]"]
        loc = ".".join(parts) or None
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            names = (known or {}).get(".".join(parts[:-1]), ())
            message = "unknown field" + did_you_mean(parts[-1], names)
        elif item["type"] == "literal_error" and isinstance(item.get("input"), str):
            # The choices pydantic lists in ctx: "'stage', 'optimizer' or 'tags'".
            choices = re.findall(r"'([^']*)'", str(item.get("ctx", {}).get("expected", "")))
            message += did_you_mean(item["input"], choices)
        details.append({"field": loc, "message": message})
    first = details[0]
    return SpecError(first["field"], f"{first['field']}: {first['message']}", details)


def _check_rules(spec: dict[str, Any], limits: Limits) -> None:
    """Rules across fields, each naming the field to change."""
    stage, optimizer = spec["stage"], spec["optimizer"]
    if stage in HAND_WRITTEN_STAGES and optimizer != "sgd":
        raise SpecError(
            "optimizer",
            f"optimizer: stage {stage!r} writes the plain SGD update by hand; "
            f"use stage 'optim' or 'module' for {optimizer!r}",
        )
    if spec["momentum"] is not None and optimizer not in MOMENTUM_OPTIMIZERS:
        raise SpecError(
            "momentum", f"momentum: optimizer {optimizer!r} takes no momentum (use 'momentum')"
        )
    if spec["weight_decay"] is not None and stage in HAND_WRITTEN_STAGES:
        raise SpecError(
            "weight_decay", f"weight_decay: stage {stage!r} writes the plain update by hand"
        )
    if spec["iterations"] > limits.max_iterations:
        raise SpecError(
            "iterations", f"iterations: at most {limits.max_iterations} on this deployment"
        )
    for dim in DIMENSIONS:
        if spec[dim] > limits.max_dim:
            raise SpecError(dim, f"{dim}: at most {limits.max_dim}")
    dims = (spec["N"], spec["D_in"], spec["H"], spec["D_out"])
    if tensor_elements(*dims) > limits.max_elements:
        raise SpecError(
            "N", f"N, D_in, H, D_out: tensors over the cap of {limits.max_elements} elements"
        )
    if work_flops(spec["iterations"], *dims) > limits.max_work:
        raise SpecError(
            "iterations",
            f"iterations: iterations x work per iteration over the cap of {limits.max_work:.3g}"
            " floating-point operations",
        )
    if len(set(spec["tags"])) != len(spec["tags"]):
        raise SpecError("tags", "tags: duplicate label")


def validate_job(
    data: Any, limits: Limits | None = None, *, draw_seed: bool = True
) -> dict[str, Any]:
    """Validate a job request and return it with every default filled in."""
    if not isinstance(data, dict):
        raise SpecError(None, "the job must be a JSON object")
    try:
        request = JobRequest.model_validate(data)
    except pydantic.ValidationError as error:
        raise spec_error(error, {"": JobRequest.model_fields}) from None
    spec = request.model_dump()
    is_module = spec["stage"] == "module"
    if spec["optimizer"] is None:
        spec["optimizer"] = "adam" if is_module else "sgd"
    if spec["init"] is None:
        spec["init"] = "default" if is_module else "normal"
    if spec["lr"] is None:
        spec["lr"] = 1e-4 if is_module else 1e-6
    if spec["seed"] is None and draw_seed:
        spec["seed"] = secrets.randbelow(MAX_SEED + 1)
    _check_rules(spec, limits or Limits())
    return spec
