"""Expand a sweep request (base, grid, random search, replicates) into job field dicts.

Pure: no database, no Flask. Everything random comes from `random.Random(sweep seed)`, drawn in
a fixed order (first the `n` random points, each field in sorted name order; then the
replicate seeds), so the same request and seed always expand to the same jobs.
"""

from __future__ import annotations

import itertools
import math
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from service.jobspec import MAX_SEED, JobRequest, SpecError

JOB_FIELDS = tuple(JobRequest.model_fields)
SWEEP_KEYS = ("name", "base", "grid", "random", "seed", "seeds", "repeats", "skip_invalid", "fused")
MAX_LEVELS = 10_000
DISTRIBUTIONS = ("log_uniform", "uniform")


@dataclass
class Expansion:
    """The jobs a sweep expands to and what varies between them."""

    seed: int
    jobs: list[dict[str, Any]]
    varied: list[str]
    factor_order: list[str] = field(default_factory=list)


def _fail(where: str, message: str) -> SpecError:
    return SpecError(where, f"{where}: {message}")


def _check_name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 200:
        raise _fail("name", "a sweep needs a name of 1 to 200 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _fail("name", "control characters are not allowed")
    return value


def _check_field(where: str, name: Any) -> str:
    if name not in JOB_FIELDS:
        raise _fail(f"{where}.{name}", "not a job field")
    return name


def _check_seed(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise _fail(where, f"seeds are integers in [0, {MAX_SEED}]")
    return value


def _check_grid(grid: Any) -> dict[str, list[Any]]:
    if grid is None:
        return {}
    if not isinstance(grid, dict):
        raise _fail("grid", "must map job fields to lists of values")
    for name, values in grid.items():
        _check_field("grid", name)
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_LEVELS:
            raise _fail(f"grid.{name}", f"must be a list of 1 to {MAX_LEVELS} values")
    return grid


def _check_distribution(where: str, space: Any) -> None:
    if isinstance(space, list):
        if not 1 <= len(space) <= MAX_LEVELS:
            raise _fail(where, f"a list of 1 to {MAX_LEVELS} values")
        return
    if not isinstance(space, dict) or len(space) != 1 or next(iter(space)) not in DISTRIBUTIONS:
        raise _fail(where, "a list of values, {'log_uniform': [low, high]} or {'uniform': [...]}")
    kind, bounds = next(iter(space.items()))
    ok = (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        and all(math.isfinite(b) for b in bounds)
        and bounds[0] <= bounds[1]
    )
    if not ok or (kind == "log_uniform" and bounds[0] <= 0):
        raise _fail(
            where,
            f"{kind} takes [low, high] with low <= high"
            + (" and low > 0" if kind == "log_uniform" else ""),
        )


def _check_random(spec: Any) -> tuple[int, dict[str, Any]]:
    """The number of draws and the space; accepts {"n", "space": {...}} or {"n", field: ...}."""
    if spec is None:
        return 0, {}
    if not isinstance(spec, dict):
        raise _fail("random", "must be {'n': draws, 'space': {field: values or distribution}}")
    n = spec.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_LEVELS:
        raise _fail("random.n", f"the number of draws, 1 to {MAX_LEVELS}")
    if "space" in spec:
        if set(spec) != {"n", "space"} or not isinstance(spec["space"], dict):
            raise _fail("random.space", "must map job fields to values or distributions")
        space = spec["space"]
    else:
        space = {k: v for k, v in spec.items() if k != "n"}
    if not space:
        raise _fail("random.space", "name at least one field to draw")
    for name, values in space.items():
        _check_field("random", name)
        _check_distribution(f"random.{name}", values)
    return n, space


def _draw(rng: random.Random, space: Any) -> Any:
    if isinstance(space, list):
        return space[rng.randrange(len(space))]
    kind, (low, high) = next(iter(space.items()))
    if kind == "uniform":
        return min(max(rng.uniform(low, high), low), high)
    # Clamped: 10 ** uniform(log10 low, log10 high) may round a hair past a bound.
    value = 10 ** rng.uniform(math.log10(low), math.log10(high))
    return min(max(value, low), high)


def count_jobs(request: dict[str, Any]) -> tuple[int, str]:
    """How many jobs a checked request expands to, and the field to blame if that is too many."""
    grid = _check_grid(request.get("grid"))
    draws, _ = _check_random(request.get("random"))
    total = math.prod(len(v) for v in grid.values()) * max(draws, 1)
    replicates = _replicate_count(request)
    blame = "grid" if grid else ("random" if draws else "repeats")
    if replicates > 1 and not grid and not draws:
        blame = "seeds" if "seeds" in request else "repeats"
    return total * replicates, blame


def _replicate_count(request: dict[str, Any]) -> int:
    if request.get("seeds") is not None:
        seeds = request["seeds"]
        if not isinstance(seeds, list) or not 1 <= len(seeds) <= MAX_LEVELS:
            raise _fail("seeds", f"a list of 1 to {MAX_LEVELS} seeds")
        return len(seeds)
    repeats = request.get("repeats")
    if repeats is None:
        return 1
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_LEVELS:
        raise _fail("repeats", f"the number of replicates, 1 to {MAX_LEVELS}")
    return repeats


def check_request(request: Any) -> dict[str, Any]:
    """The sweep request's own shape (not its jobs), or a SpecError naming the key."""
    if not isinstance(request, dict):
        raise SpecError(None, "the sweep must be a JSON object")
    for key in request:
        if key not in SWEEP_KEYS:
            raise _fail(str(key), f"unknown sweep key (known: {', '.join(SWEEP_KEYS)})")
    _check_name(request.get("name"))
    base = request.get("base", {})
    if not isinstance(base, dict):
        raise _fail("base", "must be an object of job fields")
    for name in base:
        _check_field("base", name)
    grid = _check_grid(request.get("grid"))
    _, space = _check_random(request.get("random"))
    for name in set(grid) & set(space):
        raise _fail(f"random.{name}", "already a grid field")
    if request.get("seeds") is not None and request.get("repeats") is not None:
        raise _fail("repeats", "give seeds or repeats, not both")
    replicated = request.get("seeds") is not None or request.get("repeats") is not None
    if replicated and ("seed" in grid or "seed" in space):
        raise _fail("seeds", "seed is already varied by the grid or random search")
    for i, seed in enumerate(request.get("seeds") or []):
        _check_seed(f"seeds.{i}", seed)
    _replicate_count(request)
    if request.get("seed") is not None:
        _check_seed("seed", request["seed"])
    for flag in ("skip_invalid", "fused"):
        if not isinstance(request.get(flag, False), bool):
            raise _fail(flag, "must be true or false")
    return request


def expand(request: dict[str, Any]) -> Expansion:
    """Every job of a checked request, in order: grid points (last grid field fastest), then
    random draws within each grid point, then replicate seeds within each of those."""
    seed = request.get("seed")
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    rng = random.Random(seed)
    base = dict(request.get("base") or {})
    grid = _check_grid(request.get("grid"))
    draws, space = _check_random(request.get("random"))
    drawn = [{name: _draw(rng, space[name]) for name in sorted(space)} for _ in range(draws)]
    if request.get("seeds") is not None:
        seeds: list[int | None] = list(request["seeds"])
    elif request.get("repeats") is not None:
        seeds = [rng.getrandbits(63) for _ in range(request["repeats"])]
    elif "seed" in base or "seed" in grid or "seed" in space:
        seeds = [None]
    else:
        # One seed for every configuration: they then differ only by the factors varied.
        seeds = [rng.getrandbits(63)]
    names = list(grid)
    jobs = []
    for point in itertools.product(*(grid[name] for name in names)):
        for draw in drawn or [{}]:
            for replicate in seeds:
                job = {**base, **dict(zip(names, point, strict=True)), **draw}
                if replicate is not None:
                    job["seed"] = replicate
                jobs.append(job)
    order = names + [n for n in sorted(space) if n not in names] + ["seed"]
    varied = [n for n in order if len({_level_key(job.get(n)) for job in jobs}) > 1]
    return Expansion(seed=seed, jobs=jobs, varied=varied, factor_order=order)


def _level_key(value: Any) -> str:
    """A hashable, type-aware key for any JSON value (1 and 1.0 and True stay apart)."""
    return f"{type(value).__name__}:{value!r}"
