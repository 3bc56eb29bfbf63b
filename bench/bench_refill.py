"""Whether refilling fused stacks pays: an asha sweep with TRAINQ_REFILL_STACKS on and off.

    python -m bench.bench_refill [--seeds 20] [--dims 64,32,32,10] [--repeats 3]
                                 [--search-trials 0]

Two `trainq up` services side by side, alike but for the switch; each repeat runs the same grid
sweep (7 optimizers x 3 learning rates x seeds, `early_stop: asha`, fused by `auto`) on each in
turn, the order rotated, so the two share the machine's state. With `--search-trials N` also a
TPE search of N trials (lr and optimizer, asha) on each. Wall time from the POST to every job
terminal, and the training steps the sweep spent.
"""

from __future__ import annotations

import argparse
import time

from bench.embedded import EmbeddedService
from bench.report import machine, median, publish, spread, table
from bench.workloads import OPTIMIZERS, RATES, sweep_request

EARLY_STOP = {"rule": "asha", "grace": 16, "reduction": 3}
SWITCH = {True: "refill on", False: "refill off (TRAINQ_REFILL_STACKS=0)"}


def run_sweep(service: EmbeddedService, request: dict) -> tuple[float, dict[str, int]]:
    """Seconds from the POST to every job terminal, and the sweep's jobs by state and steps."""
    start = time.monotonic()
    sweep = service.submit_sweep(request)
    # A search sweep has no job until the controller asks: its `done` is the API's to say.
    url = f"{service.url}/api/v1/sweeps/{sweep['id']}"
    while not service.http.get(url, timeout=30).json()["done"]:
        if time.monotonic() - start > 3600:
            raise TimeoutError(f"sweep {sweep['id']} not done in an hour")
        time.sleep(0.05)
    return time.monotonic() - start, service.sweep_progress(sweep["id"])


def search_request(trials: int, dims: dict[str, int], seed: int) -> dict:
    """A TPE search over lr and optimizer with asha, as many in flight as a stack holds."""
    return {
        "name": "refill-search",
        "base": {"stage": "optim", "iterations": 500, **dims},
        "search": {
            "method": "tpe",
            "n": trials,
            "parallel": 32,
            "space": {"lr": {"log_uniform": [1e-7, 1e-1]}, "optimizer": list(OPTIMIZERS)},
        },
        "early_stop": EARLY_STOP,
        "seed": seed,
    }


def compare(args: argparse.Namespace) -> str:
    """Each workload on both services, `repeats` times, alternating; a table per workload."""
    dims = dict(zip(("N", "D_in", "H", "D_out"), map(int, args.dims.split(",")), strict=True))
    count = len(OPTIMIZERS) * len(RATES) * args.seeds
    grid = {**sweep_request(count, dims, name="refill-grid"), "early_stop": EARLY_STOP}
    workloads = {f"grid of {count} jobs": lambda _repeat: grid}
    if args.search_trials:
        workloads[f"TPE search of {args.search_trials} trials"] = lambda repeat: search_request(
            args.search_trials, dims, seed=repeat
        )
    measured: dict[str, dict[bool, list[tuple[float, dict[str, int]]]]] = {
        name: {True: [], False: []} for name in workloads
    }
    services = {
        on: EmbeddedService(extra_env={"TRAINQ_REFILL_STACKS": "1" if on else "0"})
        for on in (True, False)
    }
    try:
        for service in services.values():
            service.start()
            run_sweep(service, sweep_request(21, dims, name="warm", iterations=20))
        for repeat in range(args.repeats):
            order = (True, False) if repeat % 2 == 0 else (False, True)
            for name, make in workloads.items():
                for on in order:
                    result = run_sweep(services[on], make(repeat))
                    measured[name][on].append(result)
                    print(f"{name}, {SWITCH[on]}: {result[0]:.2f} s {result[1]}", flush=True)
    finally:
        for service in services.values():
            service.stop()
    blocks = []
    for name, runs in measured.items():
        rows: list[list[object]] = []
        for on in (True, False):
            seconds = [s for s, _ in runs[on]]
            steps = [p["steps"] for _, p in runs[on]]
            pruned = [p.get("pruned", 0) for _, p in runs[on]]
            rows.append(
                [
                    SWITCH[on],
                    f"{median(seconds):.2f}",
                    spread(seconds),
                    median(steps),
                    median(pruned),
                ]
            )
        off, on_ = (median([s for s, _ in runs[flag]]) for flag in (False, True))
        blocks.append(
            f"{name}, N, D_in, H, D_out = {dims}, 500 iterations, early_stop {EARLY_STOP}\n\n"
            + table(["run", "median s", "range s", "steps", "pruned"], rows)
            + f"\n\noff / on: **{off / on_:.2f}x**"
        )
    return (
        f"Two `trainq up` services (2 worker processes each), {args.repeats} repeat(s), the order"
        " alternated each repeat.\n\n" + "\n\n".join(blocks)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="grid seeds (21 jobs each)")
    parser.add_argument("--dims", default="64,32,32,10", help="N,D_in,H,D_out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--search-trials", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    started = machine()
    publish("Refilled fused stacks", started, compare(args), record=not args.no_record)


if __name__ == "__main__":
    main()
