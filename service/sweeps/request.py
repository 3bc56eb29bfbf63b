"""The sweep request: the pydantic model that validates POST /sweeps and documents it.

A new key is a field on `SweepRequest` (its own model if it has parts) and, if it has rules
across keys, a few lines in `_check_rules`; `expand` and `count_jobs` then read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, WrapValidator
from pydantic_core import PydanticCustomError

from service.jobspec import MAX_SEED, JobRequest, Name, SpecError, spec_error

JOB_FIELDS = tuple(JobRequest.model_fields)
MAX_LEVELS = 10_000

if TYPE_CHECKING:
    JobField = str
else:  # built from the job model at run time, so the schema lists exactly its fields
    JobField = Literal[JOB_FIELDS]
Levels = Annotated[list[Any], Field(min_length=1, max_length=MAX_LEVELS)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Bounds = Annotated[list[float], Field(min_length=2, max_length=2, description="[low, high]")]


class Strict(BaseModel):
    """Unknown keys refused, no silent type coercion, no infinities (as for a job)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class LogUniform(Strict):
    """Draws spread evenly over the decades from low (> 0) to high."""

    log_uniform: Bounds


class Uniform(Strict):
    """Draws spread evenly from low to high."""

    uniform: Bounds


def _one_distribution(value: Any, handler: pydantic.ValidatorFunctionWrapHandler) -> Any:
    """One message naming the field, not one per shape the union tried; then the bounds."""
    try:
        drawn = handler(value)
    except pydantic.ValidationError:
        raise PydanticCustomError(
            "distribution",
            f"a list of 1 to {MAX_LEVELS} values, {{'log_uniform': [low, high]}}"
            " or {'uniform': [low, high]}",
        ) from None
    if isinstance(drawn, LogUniform | Uniform):
        kind, (low, high) = next(iter(drawn.model_dump().items()))
        if low > high or (kind == "log_uniform" and low <= 0):
            extra = " and low > 0" if kind == "log_uniform" else ""
            raise PydanticCustomError(
                "distribution", f"{kind} takes [low, high] with low <= high{extra}"
            )
    return drawn


# Values drawn from a list, or from a range.
Distribution = Annotated[Levels | LogUniform | Uniform, WrapValidator(_one_distribution)]


def _auto_or_bool(value: Any, handler: pydantic.ValidatorFunctionWrapHandler) -> Any:
    """One message naming the field, not one per member of the union."""
    try:
        return handler(value)
    except pydantic.ValidationError:
        raise PydanticCustomError("fused", "'auto', true or false") from None


Fused = Annotated[Literal["auto"] | bool, WrapValidator(_auto_or_bool)]


def _name_the_keys(schema: dict[str, Any], model: type[BaseModel]) -> None:
    # pydantic documents what the extra keys hold, not which names they may take.
    schema["propertyNames"] = {"enum": [*model.model_fields, *JOB_FIELDS]}


class RandomSearch(BaseModel):
    """`n` draws from a space: {"n", "space": {field: ...}}, or the same fields beside `n`."""

    model_config = ConfigDict(
        extra="allow", strict=True, allow_inf_nan=False, json_schema_extra=_name_the_keys
    )
    # The short form: keys beside `n` are the space, checked as the space's are.
    __pydantic_extra__: dict[JobField, Distribution] = Field(init=False)

    n: Annotated[int, Field(ge=1, le=MAX_LEVELS, description="the number of draws")]
    space: dict[JobField, Distribution] | None = None

    def fields(self) -> dict[str, Distribution]:
        """Field -> what it is drawn from, whichever form the request used."""
        return dict(self.space if self.space is not None else self.model_extra or {})

    def path(self, name: str) -> str:
        """Where the request names this field, for an error."""
        return f"random.space.{name}" if self.space is not None else f"random.{name}"


class Asha(Strict):
    """Asynchronous successive halving: rungs at grace * reduction**k steps."""

    rule: Literal["asha"]
    grace: Annotated[int, Field(ge=1, le=100_000, description="the first rung, in steps")]
    reduction: Annotated[
        int, Field(ge=2, le=100, description="a job goes on past a rung if in the best 1/reduction")
    ] = 3


class Median(Strict):
    """Stop a job whose best loss so far is worse than the median of finished jobs there."""

    rule: Literal["median"]
    warmup: Annotated[int, Field(ge=0, le=100_000, description="steps before any decision")] = 0


EarlyStop = Annotated[Asha | Median, Field(discriminator="rule")]


class Search(Strict):
    """An adaptive search: `n` trials asked one by one from a sampler as earlier ones end."""

    method: Literal["tpe", "gp", "random"] = Field(
        description="Optuna's TPESampler, GPSampler or RandomSampler, through ask-and-tell"
    )
    n: Annotated[int, Field(ge=1, le=MAX_LEVELS, description="the number of trials in all")]
    parallel: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        None, description="trials in flight at once (default: the live workers' pool slots)"
    )
    space: Annotated[dict[JobField, Distribution], Field(min_length=1)] = Field(
        description="field -> a list of values, {log_uniform: [low, high]} or {uniform: [...]}"
    )


class SweepRequest(Strict):
    """A sweep as submitted: a grid and/or a random search over job fields, and replicates."""

    name: Name
    base: dict[JobField, Any] = Field(
        default_factory=dict, description="job fields every job shares"
    )
    grid: dict[JobField, Levels] | None = Field(
        None, description="field -> levels; the product, last field fastest"
    )
    random: RandomSearch | None = Field(None, description="draws crossed with the grid")
    seeds: Annotated[list[Seed], Field(min_length=1, max_length=MAX_LEVELS)] | None = Field(
        None, description="every configuration once per seed"
    )
    repeats: Annotated[int, Field(ge=1, le=MAX_LEVELS)] | None = Field(
        None, description="replicates, their seeds drawn from the sweep's seed"
    )
    seed: Seed | None = Field(None, description="the sweep's own seed (drawn when absent)")
    skip_invalid: bool = Field(False, description="skip invalid combinations instead of a 422")
    fused: Fused = Field(
        "auto",
        description="train compatible jobs together as one stacked model per message: true,"
        " false, or auto (only where the planner's cost model says it is faster on the queue's"
        " device)",
    )
    early_stop: EarlyStop | None = Field(
        None, description="stop jobs early from the stored histories: asha or median"
    )
    search: Search | None = Field(
        None, description="trials asked one by one from a sampler, instead of grid / random"
    )


def _fail(where: str, message: str) -> SpecError:
    return SpecError(where, f"{where}: {message}")


# The keys each part of a sweep takes, for the near miss of an unknown one.
KNOWN_KEYS = {"": tuple(SweepRequest.model_fields), "search": tuple(Search.model_fields)}
DISTRIBUTIONS = (*LogUniform.model_fields, *Uniform.model_fields)


def _distribution_in_grid(data: dict[str, Any]) -> SpecError | None:
    """A range given to grid, which takes levels: say where draws from a range go."""
    grid = data.get("grid")
    for field, levels in grid.items() if isinstance(grid, dict) else ():
        if isinstance(levels, dict) and (kind := next(iter(levels), None)) in DISTRIBUTIONS:
            return _fail(
                f"grid.{field}",
                f"a grid takes a list of levels; to draw {field} from {kind}, put it under"
                f" `random:` (with n, crossed with the grid) or `search:` (its space)",
            )
    return None


def _check_rules(request: SweepRequest) -> None:
    """Rules across keys, each naming the key to change."""
    grid = request.grid or {}
    space: dict[str, Distribution] = {}
    if request.random is not None:
        space = request.random.fields()
        if request.random.space is not None and request.random.model_extra:
            raise _fail("random.space", "give the fields in space or beside n, not both")
        if not space:
            raise _fail("random.space", "name at least one field to draw")
        overlap = sorted(grid.keys() & space.keys())
        if overlap:
            raise _fail(request.random.path(overlap[0]), "already a grid field")
    if request.search is not None:
        for key in ("grid", "random", "seeds", "repeats"):
            if getattr(request, key) is not None:
                raise _fail(key, "a search sweep asks its trials from its space: no " + key)
        if "tags" in request.search.space:
            raise _fail("search.space.tags", "labels are not searched: set tags in base")
    if request.seeds is not None and request.repeats is not None:
        raise _fail("repeats", "give seeds or repeats, not both")
    replicated = request.seeds is not None or request.repeats is not None
    if replicated and ("seed" in grid or "seed" in space):
        raise _fail("seeds", "seed is already varied by the grid or random search")


def _untagged(error: SpecError) -> SpecError:
    """Paths without the rule's tag pydantic puts in them ("early_stop.grace", not ".asha.")."""

    def untag(text: str | None) -> str | None:
        for rule in ("asha", "median"):
            text = text and text.replace(f"early_stop.{rule}.", "early_stop.")
        return text

    details = [{**item, "field": untag(item["field"])} for item in error.details]
    return SpecError(untag(error.field), untag(error.message) or "", details)


def validate_sweep(data: Any) -> SweepRequest:
    """The sweep request's own shape and rules (not its jobs'), or a SpecError naming the key."""
    if not isinstance(data, dict):
        raise SpecError(None, "the sweep must be a JSON object")
    try:
        request = SweepRequest.model_validate(data)
    except pydantic.ValidationError as error:
        raise _distribution_in_grid(data) or _untagged(spec_error(error, KNOWN_KEYS)) from None
    _check_rules(request)
    return request
