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
from dataclasses import dataclass
from typing import Any

from service.jobspec import MAX_SEED
from service.sweeps.request import Distribution, LogUniform, SweepRequest


@dataclass
class Expansion:
    """The jobs a sweep expands to and what varies between them."""

    seed: int
    jobs: list[dict[str, Any]]
    varied: list[str]


def _draw(rng: random.Random, space: Distribution) -> Any:
    if isinstance(space, list):
        return space[rng.randrange(len(space))]
    if isinstance(space, LogUniform):
        low, high = space.log_uniform
        # Clamped: 10 ** uniform(log10 low, log10 high) may round a hair past a bound.
        value = 10 ** rng.uniform(math.log10(low), math.log10(high))
        return min(max(value, low), high)
    low, high = space.uniform
    return min(max(rng.uniform(low, high), low), high)


def count_jobs(request: SweepRequest) -> tuple[int, str]:
    """How many jobs a request expands to, and the key to blame if that is too many."""
    grid = request.grid or {}
    draws = request.random.n if request.random is not None else 0
    total = math.prod(len(v) for v in grid.values()) * max(draws, 1)
    replicates = _replicate_count(request)
    blame = "grid" if grid else ("random" if draws else "repeats")
    if replicates > 1 and not grid and not draws:
        blame = "seeds" if request.seeds is not None else "repeats"
    return total * replicates, blame


def _replicate_count(request: SweepRequest) -> int:
    if request.seeds is not None:
        return len(request.seeds)
    return request.repeats if request.repeats is not None else 1


def expand(request: SweepRequest) -> Expansion:
    """Every job of a request, in order: grid points (last grid field fastest), then
    random draws within each grid point, then replicate seeds within each of those."""
    seed = request.seed
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    rng = random.Random(seed)
    base = dict(request.base)
    grid = request.grid or {}
    draws = request.random.n if request.random is not None else 0
    space = request.random.fields() if request.random is not None else {}
    drawn = [{name: _draw(rng, space[name]) for name in sorted(space)} for _ in range(draws)]
    if request.seeds is not None:
        seeds: list[int | None] = list(request.seeds)
    elif request.repeats is not None:
        seeds = [rng.getrandbits(63) for _ in range(request.repeats)]
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
    return Expansion(seed=seed, jobs=jobs, varied=varied)


def _level_key(value: Any) -> str:
    """A hashable, type-aware key for any JSON value (1 and 1.0 and True stay apart)."""
    return f"{type(value).__name__}:{value!r}"
