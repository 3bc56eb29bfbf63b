"""The run: arguments, then at each size the reference grid and every contender over the seeds."""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import search
from bench.embedded import EmbeddedService
from bench.report import machine, publish
from bench.search.objective import full_final, job_fields
from bench.search.optuna_tpe import optuna_search
from bench.search.ray_tune import RayTune
from bench.search.scoring import Run, key, summary, to_target
from bench.search.space import CONTENDERS, DEFAULT_CONTENDERS, PARALLEL, SIZES, WIDE
from bench.search.table import render
from bench.search.trainq import trainq_grid, trainq_search

# The package's first line, as `--help` has always said it.
_DESCRIPTION = (search.__doc__ or "").splitlines()[0]


def final_losses(runs: list[Run], dims: dict[str, int]) -> dict[tuple[str, str, float], float]:
    """Every configuration's final loss trained to its end, for the pruned trials' regret:
    known from the runs that trained it to the end, the others trained offline, 2 at a time."""
    known: dict[tuple[str, str, float], float] = {}
    for run in runs:
        for trial in run.trials:
            if trial.status == "finished" and trial.loss is not None:
                known[key(trial.params)] = trial.loss
            elif trial.status == "diverged":
                known[key(trial.params)] = math.inf
    wanted = sorted(
        {
            key(trial.params)
            for run in runs
            for trial in run.trials
            if trial.status == "pruned" and key(trial.params) not in known
        }
    )
    fields = [
        job_fields(dims, dict(zip(("optimizer", "init", "lr"), k, strict=True))) for k in wanted
    ]
    with multiprocessing.get_context("spawn").Pool(PARALLEL) as pool:
        losses = pool.map(full_final, fields, chunksize=4)
    known.update(zip(wanted, losses, strict=True))
    return known


def run_size(args: argparse.Namespace, size: str, ray: RayTune | None) -> dict[str, Any]:
    """The reference grid and every contender over the seeds, at one size."""
    dims = SIZES[size]
    runs: list[Run] = []
    with EmbeddedService(concurrency=PARALLEL) as service:
        grid = trainq_grid(service, dims)
        print(
            f"[{size}] grid: {grid['jobs']} jobs, {grid['wall']:.1f} s, "
            f"reference {grid['reference']:.6g} at {grid['best']}",
            flush=True,
        )
        for i, seed in enumerate(args.seed_list):
            order = (
                args.contenders[i % len(args.contenders) :]
                + args.contenders[: i % len(args.contenders)]
            )
            for contender in order:
                if contender.startswith("trainq-"):
                    _, method, *rest = contender.split("-")
                    parallel = WIDE if "wide" in rest else PARALLEL
                    run = trainq_search(
                        service, dims, method, "asha" in rest, seed, args.trials, parallel
                    )
                elif contender == "optuna-tpe-sh":
                    run = optuna_search(dims, seed, args.trials, args.report_every)
                else:
                    if ray is None:
                        raise RuntimeError("Ray Tune was not started")
                    run = ray.search(dims, seed, args.trials, args.report_every)
                runs.append(run)
                hit = to_target(run.trials, grid["reference"], 0.01)
                stacks = run.notes.get("stack_sizes")
                print(
                    f"[{size}] seed {seed} {contender}: {len(run.trials)} trials, "
                    f"{sum(t.steps for t in run.trials)} steps, {run.wall:.1f} s; to 1%: "
                    + (f"{hit[0]} steps, {hit[1]:.1f} s" if hit else "never")
                    + (f"; trials by stack size {stacks}" if stacks else ""),
                    flush=True,
                )
    start = time.perf_counter()
    full = final_losses(runs, dims)
    offline = time.perf_counter() - start
    print(f"[{size}] pruned configurations trained to the end offline in {offline:.1f} s")
    contenders = {}
    for contender in args.contenders:
        mine = [run for run in runs if run.contender == contender]
        contenders[contender] = summary(
            mine, grid["reference"], grid["nominal_steps"], lambda p: full[key(p)]
        )
    return {
        "size": size,
        "dims": dims,
        "grid": grid,
        "offline_seconds": offline,
        "contenders": contenders,
        "runs": [asdict(run) for run in runs],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's arguments, contenders split and checked, seeds listed (None: sys.argv)."""
    parser = argparse.ArgumentParser(description=_DESCRIPTION)
    parser.add_argument("--size", choices=["default", "small", "both"], default="both")
    parser.add_argument("--seeds", type=int, default=10, help="search seeds 0 .. seeds-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=100, help="the trial budget n")
    parser.add_argument("--report-every", type=int, default=10)
    parser.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS))
    parser.add_argument("--json", type=Path, default=Path("bench_search.json"))
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args(argv)
    args.contenders = args.contenders.split(",")
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; known: {', '.join(CONTENDERS)}")
    args.seed_list = list(range(args.first_seed, args.first_seed + args.seeds))
    return args


def main(argv: list[str] | None = None) -> None:
    """Run every size asked for, publish each size's table, write the JSON."""
    args = parse_args(argv)
    started = machine()
    sizes = ["default", "small"] if args.size == "both" else [args.size]
    ray = RayTune() if "ray-random-asha" in args.contenders else None
    results = []
    try:
        for size in sizes:
            result = run_size(args, size, ray)
            results.append(result)
            args.json.write_text(json.dumps(results, indent=1, default=str))
            publish(
                f"Adaptive search vs Optuna and Ray Tune ({size} size)",
                started,
                render(result, args),
                record=not args.no_record,
            )
    finally:
        if ray is not None:
            ray.close()
    print(f"JSON: {args.json}", file=sys.stderr)
