"""One job's latency: POST to terminal with its history stored, against bare training time.

python -m bench.bench_latency [--repeats 20] [--device cpu] [--events-off]

--events-off also runs a second `trainq up` with Celery task events off (TRAINQ_TASK_EVENTS=0),
its runs alternating with the first's (events on, the default), to measure what events cost.
"""

from __future__ import annotations

import argparse
import contextlib
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
    parser.add_argument("--events-off", action="store_true", help="also a service without events")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    started = machine()
    base = {"stage": "optim", "device": args.device}  # the default job: sgd, 500 iterations
    kinds = ["events on", "events off"] if args.events_off else ["events on"]
    bare: list[float] = []
    latency: dict[str, list[float]] = {kind: [] for kind in kinds}
    overhead: dict[str, list[float]] = {kind: [] for kind in kinds}
    # The bare runs happen in a warm child with one thread, as a worker pool process trains.
    queues = ("cpu", "gpu") if args.device == "cuda" else ("cpu",)
    with contextlib.ExitStack() as stack:
        services = {
            kind: stack.enter_context(
                EmbeddedService(
                    queues=queues,
                    extra_env={"TRAINQ_TASK_EVENTS": "0" if kind == "events off" else "1"},
                )
            )
            for kind in kinds
        }
        pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(1))
        for seed in range(3):  # warm every side
            pool.apply(timed_alone, ({**base, "seed": seed},))
            for service in services.values():
                through_service(service, {**base, "seed": seed})
        for seed in range(100, 100 + args.repeats):
            fields = {**base, "seed": seed}
            alone = pool.apply(timed_alone, (fields,))
            bare.append(alone)
            line = [f"seed {seed}: bare {alone * 1e3:.0f} ms"]
            for kind, service in services.items():
                seconds, job_id = through_service(service, fields)
                job = service.http.get(f"{service.url}/api/v1/jobs/{job_id}").json()
                assert job["status"] == "succeeded", job
                assert job["steps_done"] == 500, job
                latency[kind].append(seconds)
                overhead[kind].append(seconds - alone)
                line.append(f"{kind} {seconds * 1e3:.0f} ms")
            print(", ".join(line), flush=True)
    rows = [
        [
            f"bare training on {args.device} (warm process, 1 thread)",
            f"{median(bare) * 1e3:.0f}",
            spread(bare),
        ]
    ]
    for kind in kinds:
        suffix = f" ({kind})" if args.events_off else ""
        rows.append(
            [
                f"POST -> succeeded, 500 losses stored{suffix}",
                f"{median(latency[kind]) * 1e3:.0f}",
                spread(latency[kind]),
            ]
        )
        rows.append(
            [
                f"overhead (paired difference){suffix}",
                f"{median(overhead[kind]) * 1e3:.0f}",
                spread(overhead[kind]),
            ]
        )
    if args.events_off:
        cost = [
            on - off for on, off in zip(latency["events on"], latency["events off"], strict=True)
        ]
        rows.append(["events on - events off (paired)", f"{median(cost) * 1e3:.1f}", spread(cost)])
    first = overhead["events on"]
    body = (
        f"Default job (stage optim, sgd, 500 iterations, 64x1000x100x10) on {args.device}, "
        f"{args.repeats} repeats, bare and service runs alternating; medians.\n\n"
        + table(["measure", "median ms", "range s"], rows)
        + f"\n\nmedian overhead **{median(first) * 1e3:.0f} ms** (goal <= 50 ms)"
    )
    title = "One job's latency, task events on and off" if args.events_off else "One job's latency"
    publish(title, started, body, record=not args.no_record)


if __name__ == "__main__":
    main()
