"""One job's latency: POST to terminal with its history stored, against bare training time.

python -m bench.bench_latency [--repeats 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

from bench.embedded import EmbeddedService
from bench.report import machine, median, publish, spread, table
from bench.workloads import train_alone


def timed_alone(fields: dict) -> float:
    """Seconds to train the job in a warm process, no queue and no database."""
    start = time.perf_counter()
    train_alone(fields)
    return time.perf_counter() - start


def through_service(service: EmbeddedService, fields: dict) -> tuple[float, int]:
    """Seconds from POST to the job seen terminal, polling its row every 2 ms; and its id."""
    start = time.perf_counter()
    job_id = service.http.post(f"{service.url}/api/v1/jobs", json=fields).json()["id"]
    service.wait_all([job_id], poll=0.002)
    return time.perf_counter() - start, job_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    started = machine()
    base = {"stage": "optim", "device": args.device}  # the default job: sgd, 500 iterations
    bare, latency, overhead = [], [], []
    # The bare runs happen in a warm child with one thread, as a worker pool process trains.
    queues = ("cpu", "gpu") if args.device == "cuda" else ("cpu",)
    with (
        EmbeddedService(queues=queues) as service,
        multiprocessing.get_context("spawn").Pool(1) as pool,
    ):
        for seed in range(3):  # warm both sides
            pool.apply(timed_alone, ({**base, "seed": seed},))
            through_service(service, {**base, "seed": seed})
        for seed in range(100, 100 + args.repeats):
            fields = {**base, "seed": seed}
            alone = pool.apply(timed_alone, (fields,))
            seconds, job_id = through_service(service, fields)
            job = service.http.get(f"{service.url}/api/v1/jobs/{job_id}").json()
            assert job["status"] == "succeeded", job
            assert job["steps_done"] == 500, job
            bare.append(alone)
            latency.append(seconds)
            overhead.append(seconds - alone)
            print(
                f"seed {seed}: bare {alone * 1e3:.0f} ms, service {seconds * 1e3:.0f} ms",
                flush=True,
            )
    rows = [
        [
            f"bare training on {args.device} (warm process, 1 thread)",
            f"{median(bare) * 1e3:.0f}",
            spread(bare),
        ],
        ["POST -> succeeded, 500 losses stored", f"{median(latency) * 1e3:.0f}", spread(latency)],
        ["overhead (paired difference)", f"{median(overhead) * 1e3:.0f}", spread(overhead)],
    ]
    body = (
        f"Default job (stage optim, sgd, 500 iterations, 64x1000x100x10) on {args.device}, "
        f"{args.repeats} repeats, bare and service runs alternating; medians.\n\n"
        + table(["measure", "median ms", "range s"], rows)
        + f"\n\nmedian overhead **{median(overhead) * 1e3:.0f} ms** (goal <= 50 ms)"
    )
    publish("One job's latency", started, body, record=not args.no_record)


if __name__ == "__main__":
    main()
