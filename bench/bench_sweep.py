"""Sweep throughput: the service against the hardware limit, warm processes and plain scripts;
and fused against unfused training of a small-dimension sweep.

    python -m bench.bench_sweep [--jobs 200] [--plain-jobs 20] [--fused-jobs 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time

from bench.embedded import ROOT, EmbeddedService
from bench.report import machine, median, publish, spread, table
from bench.workloads import (
    DEFAULT_DIMS,
    matrix_flops,
    one_core_matmul_rate,
    sweep_fields,
    train_alone,
)

PLAIN_SCRIPT = """
import json, sys, torch
from service.jobspec import validate_job
from worker.training import TrainSpec, train_to_list
train_to_list(TrainSpec.from_fields(validate_job(json.loads(sys.argv[1]))))
"""


def ideal(fields: list[dict], cores: int) -> tuple[float, int]:
    """(b): the jobs' training functions in one warm process per core; seconds and steps."""
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map(train_alone, fields[:cores], chunksize=1)  # warm: torch imported, code loaded
        start = time.perf_counter()
        steps = pool.map(train_alone, fields, chunksize=1)
        return time.perf_counter() - start, sum(steps)


def plain_scripts(fields: list[dict]) -> list[float]:
    """(c): one `python -c` process per job, one after another; seconds each."""
    times = []
    for job in fields:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", PLAIN_SCRIPT, json.dumps(job)], cwd=ROOT, check=True)
        times.append(time.perf_counter() - start)
    return times


def through_api(service: EmbeddedService, fields: list[dict]) -> float:
    """The service: POST every job, wait until all are terminal; seconds from first POST."""
    start = time.perf_counter()
    response = service.http.post(f"{service.url}/api/v1/sweeps", json={})
    has_sweeps = response.status_code not in (404, 405)
    # Until POST /sweeps exists on main, a client loop of POST /jobs is the submission path.
    ids = [service.http.post(f"{service.url}/api/v1/jobs", json=job).json()["id"] for job in fields]
    service.wait_all(ids)
    if has_sweeps:
        print("note: POST /api/v1/sweeps exists now; this run still used POST /jobs")
    return time.perf_counter() - start


def direct(service: EmbeddedService, fields: list[dict], fused: bool, queue: str = "cpu") -> float:
    """Write the rows, then enqueue one message per job or planned fused batches; seconds."""
    from service.batching import plan_batches
    from service.broker import enqueue_batches, enqueue_jobs, make_celery
    from service.config import Config
    from service.db import make_engine, make_session_factory
    from service.jobs import new_job
    from service.jobspec import validate_job

    engine = make_engine(service.database_url)
    app = make_celery(Config.from_env(database_url=service.database_url,
                                      broker_url=service.broker_url))  # fmt: skip
    start = time.perf_counter()
    with make_session_factory(engine)() as session:
        jobs = [new_job(validate_job(job), queue) for job in fields]
        session.add_all(jobs)
        session.commit()
        ids = [job.id for job in jobs]
        if fused:
            enqueue_batches(app, plan_batches(jobs))
        else:
            enqueue_jobs(app, [(job.id, job.queue) for job in jobs])
    service.wait_all(ids)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def throughput(args: argparse.Namespace, cores: int) -> str:
    """Service vs (a), (b), (c) on the default sweep."""
    fields = sweep_fields(args.jobs)
    rate = one_core_matmul_rate(DEFAULT_DIMS)
    b_seconds, steps = ideal(fields, cores)
    flops = sum(matrix_flops(job, 0) for job in fields) + matrix_flops(DEFAULT_DIMS, steps)
    a_seconds = flops / (cores * rate)
    with EmbeddedService() as service:
        through_api(service, sweep_fields(cores, iterations=20))  # warm the workers
        service_seconds = through_api(service, fields)
    plain = plain_scripts(fields[: args.plain_jobs])
    c_seconds = sum(plain) / len(plain) * len(fields)
    rows = [
        ["(a) hardware limit", f"{a_seconds:.2f}", f"{rate / 1e9:.1f} GFLOP/s x {cores} cores, "
         f"{flops / 1e9:.0f} GFLOP ({steps} steps)"],
        ["(b) warm process per core", f"{b_seconds:.2f}", "no queue, no database"],
        ["service (trainq up, POST /jobs)", f"{service_seconds:.2f}", f"{args.jobs} jobs"],
        ["(c) python process per job", f"{c_seconds:.2f}", f"{args.plain_jobs} run, extrapolated; "
         f"median {median(plain):.2f} s ({spread(plain)})"],
    ]  # fmt: skip
    ratios = [
        ["service / (b) throughput", f"{b_seconds / service_seconds:.3f}", ">= 0.9"],
        ["service / (a) throughput", f"{a_seconds / service_seconds:.3f}", ">= 0.85"],
        ["(c) / service time", f"{c_seconds / service_seconds:.1f}x", ">= 10x"],
    ]
    return (
        table(["run", "seconds", "notes"], rows)
        + "\n\n"
        + table(["ratio", "value", "goal"], ratios)
    )


def fused_vs_unfused(args: argparse.Namespace) -> str:
    """The same small-dimension sweep through the service, one message per job vs fused."""
    dims = dict(zip(("N", "D_in", "H", "D_out"), map(int, args.fused_dims.split(",")), strict=True))
    extra = {"device": args.device}
    queue = "gpu" if args.device == "cuda" else "cpu"
    rows, unfused, fused = [], [], []
    with EmbeddedService(queues=("cpu", queue)) as service:
        warm = sweep_fields(4, dims, **extra)
        direct(service, warm, fused=False, queue=queue)
        direct(service, warm, fused=True, queue=queue)
        for _ in range(args.repeats):
            fields = sweep_fields(args.fused_jobs, dims, **extra)
            unfused.append(direct(service, fields, fused=False, queue=queue))
            fused.append(direct(service, fields, fused=True, queue=queue))
    rows.append(
        [f"unfused ({args.fused_jobs} messages)", f"{median(unfused):.2f}", spread(unfused)]
    )
    rows.append(["fused (plan_batches)", f"{median(fused):.2f}", spread(fused)])
    ratio = median(unfused) / median(fused)
    goal = ">= 50x (GPU, default size)" if args.device == "cuda" else ">= 5x (CPU, D_in = H = 32)"
    return (
        f"{args.fused_jobs} jobs (7 optimizers x 3 rates x seeds), N, D_in, H, D_out = {dims}, "
        f"500 iterations, device {args.device}; rows written and enqueued directly, "
        f"time to all terminal; {args.repeats} repeat(s), alternating.\n\n"
        + table(["run", "median s", "range s"], rows)
        + f"\n\nfused speed-up: **{ratio:.1f}x** (goal {goal})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--plain-jobs", type=int, default=20)
    parser.add_argument("--fused-jobs", type=int, default=256)
    parser.add_argument(
        "--fused-dims", default="64,32,32,10", help="N,D_in,H,D_out of the fused comparison"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-fused", action="store_true")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    started = machine()
    if not args.skip_throughput:
        publish("Sweep throughput", started, throughput(args, cores), record=not args.no_record)
    if not args.skip_fused:
        publish(
            "Fused vs unfused sweep", started, fused_vs_unfused(args), record=not args.no_record
        )


if __name__ == "__main__":
    main()
