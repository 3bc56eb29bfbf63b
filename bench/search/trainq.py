"""trainq's contenders, through the embedded service: the reference grid and the search sweeps."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bench.embedded import EmbeddedService
from bench.search.scoring import Run, Trial, lr_grid
from bench.search.space import (
    DATA_SEED,
    GRACE,
    INITS,
    ITERATIONS,
    LR_RANGE,
    OPTIMIZERS,
    PARALLEL,
    REDUCTION,
    WIDE,
)


def _timestamp(text: str) -> float:
    """A stored (naive UTC) ISO time in seconds since the epoch."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def sweep_space() -> dict[str, Any]:
    """The search space as a trainq sweep names it."""
    return {
        "optimizer": list(OPTIMIZERS),
        "init": list(INITS),
        "lr": {"log_uniform": list(LR_RANGE)},
    }


def trainq_grid(service: EmbeddedService, dims: dict[str, int]) -> dict[str, Any]:
    """The reference grid through the service: its jobs, best final loss and wall time."""
    request = {
        "name": "reference-grid",
        "base": {"stage": "optim", "iterations": ITERATIONS, **dims, "seed": DATA_SEED},
        "grid": {"optimizer": list(OPTIMIZERS), "init": list(INITS), "lr": lr_grid()},
    }
    start = time.perf_counter()
    sweep = service.submit_sweep(request)
    service.wait_sweep(sweep["id"])
    wall = time.perf_counter() - start
    jobs = service.sweep_jobs(sweep["id"])
    finished = [job for job in jobs if job["status"] == "succeeded"]
    best = min(finished, key=lambda job: job["final_loss"])
    return {
        "jobs": len(jobs),
        "succeeded": len(finished),
        "steps": sum(job["steps_done"] for job in jobs),
        "nominal_steps": len(jobs) * ITERATIONS,
        "wall": wall,
        "reference": best["final_loss"],
        "best": {k: best[k] for k in ("optimizer", "init", "lr")},
        "losses": {f"{j['optimizer']} {j['init']} {j['lr']:g}": j["final_loss"] for j in jobs},
    }


def trainq_search(
    service: EmbeddedService,
    dims: dict[str, int],
    method: str,
    asha: bool,
    seed: int,
    n: int,
    parallel: int = PARALLEL,
) -> Run:
    """One search sweep through the service, driven by its controller and workers."""
    request: dict[str, Any] = {
        "name": f"search-{method}",
        "base": {"stage": "optim", "iterations": ITERATIONS, **dims, "seed": DATA_SEED},
        "search": {"method": method, "n": n, "parallel": parallel, "space": sweep_space()},
        "seed": seed,
    }
    if asha:
        request["early_stop"] = {"rule": "asha", "grace": GRACE, "reduction": REDUCTION}
    start_clock, start = time.time(), time.perf_counter()
    sweep = service.submit_sweep(request)
    deadline = time.monotonic() + 3600
    while True:  # done when n trials are stored and none is in flight
        progress = service.sweep_progress(sweep["id"])
        ended = sum(v for k, v in progress.items() if k not in ("queued", "running", "steps"))
        if ended >= n and not progress.get("queued") and not progress.get("running"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweep {sweep['id']} not done: {progress}")
        time.sleep(0.05)
    wall = time.perf_counter() - start
    trials = []
    statuses = {"succeeded": "finished", "pruned": "pruned", "diverged": "diverged"}
    jobs = service.sweep_jobs(sweep["id"])
    # How the trials trained: alone (1) or in stacks of K, as each job recorded it.
    stacks = Counter(job["stack_size"] for job in jobs)
    for job in jobs:
        status = statuses.get(job["status"], job["status"])
        trials.append(
            Trial(
                end=_timestamp(job["finished_at"]) - start_clock,
                steps=job["steps_done"],
                status=status,
                loss=job["final_loss"] if status == "finished" else None,
                params={k: job[k] for k in ("optimizer", "init", "lr")},
            )
        )
    name = f"trainq-{method}" + ("-asha" if asha else "") + ("-wide" if parallel == WIDE else "")
    return Run(name, seed, trials, wall, {"stack_sizes": dict(sorted(stacks.items()))})
