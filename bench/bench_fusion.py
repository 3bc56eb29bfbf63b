"""Where fusing pays on this CPU: per-job time alone against per-job time in fused stacks.

    python -m bench.bench_fusion [--sizes 16,32,64,128,256,512] [--stacks 4,8,16,32]
                                 [--optimizers sgd,adam] [--iterations 100] [--repeats 3]

One torch thread, no service: for each D_in = H (N = 64, D_out = 10), the default job's
1000 x 100 and each optimizer, a job trained alone (`train_to_list`) and stacks of K jobs
(`train_fused_to_lists`), interleaved, medians of the repeats; the ratio alone / fused per job
(> 1: fusing is faster) and what the planner's table (`service.dispatch.costs`) decides beside
it; then the fixed costs per step the table is built on. About 5 minutes on 2 cores (add 1000
to --sizes for 1000 x 1000: 4 more).
"""

from __future__ import annotations

import argparse
import time

from bench.report import machine, median, publish, spread, table

STAGE = "optim"


# The sizes measured: (D_in, H), N = 64 and D_out = 10; the default job's (1000, 100) beside
# the square ones.
DEFAULT_SIZE = (1000, 100)


def fields(size: tuple[int, int], optimizer: str, iterations: int, stage: str = STAGE) -> dict:
    """A job's fields (API names) at this size."""
    return {
        "stage": stage,
        "optimizer": optimizer,
        "init": "normal",
        "lr": 1e-8,
        "iterations": iterations,
        "N": 64,
        "D_in": size[0],
        "H": size[1],
        "D_out": 10,
        "dtype": "float32",
    }


def specs(job: dict, count: int) -> list:
    """count jobs of one fused group, seeds 0..count-1."""
    from worker.training import TrainSpec

    return [TrainSpec.from_fields({**job, "seed": seed}) for seed in range(count)]


def per_job_alone(job: dict) -> float:
    """Seconds of one job trained alone."""
    from worker.training import train_to_list

    (spec,) = specs(job, 1)
    start = time.perf_counter()
    train_to_list(spec)
    return time.perf_counter() - start


def per_job_fused(job: dict, stack: int) -> float:
    """Seconds per job of one stack of `stack` jobs trained fused."""
    from worker.training.fused import train_fused_to_lists

    batch = specs(job, stack)
    start = time.perf_counter()
    train_fused_to_lists(batch)
    return (time.perf_counter() - start) / stack


def measure(
    job: dict, stacks: list[int], repeats: int
) -> tuple[list[float], dict[int, list[float]]]:
    """Per-job seconds alone and per stack size, every repeat interleaving all of them."""
    per_job_alone({**job, "iterations": 5})  # warm: kernels loaded, allocator primed
    per_job_fused({**job, "iterations": 5}, stacks[0])
    alone: list[float] = []
    fused: dict[int, list[float]] = {k: [] for k in stacks}
    for _ in range(repeats):
        alone.append(per_job_alone(job))
        for k in stacks:
            fused[k].append(per_job_fused(job, k))
    return alone, fused


def iterations_for(size: tuple[int, int], most: int) -> int:
    """Fewer iterations past the default job's work, so the big sizes take minutes, not tens."""
    # Never below 30: drawing a job's problem costs a few steps, alone or stacked.
    if size[0] * size[1] <= DEFAULT_SIZE[0] * DEFAULT_SIZE[1]:
        return most
    return max(30, most * DEFAULT_SIZE[0] * DEFAULT_SIZE[1] // (size[0] * size[1]))


def fixed_costs(repeats: int) -> str:
    """Microseconds per step at D_in = H = 16 (matrix work ~nil): each stage alone (sgd),
    each optimizer alone and per job in stacks of 4 and 32 (stage optim)."""
    from service.choices import OPTIMIZERS, STAGES

    iterations, rows = 200, []
    for stage in STAGES:
        job = fields((16, 16), "sgd", iterations, stage)
        alone, _ = measure(job, [4], repeats)
        rows.append([f"stage {stage}, sgd", f"{median(alone) / iterations * 1e6:.0f}", "", ""])
    for optimizer in OPTIMIZERS:
        job = fields((16, 16), optimizer, iterations)
        alone, fused = measure(job, [4, 32], repeats)
        rows.append(
            [
                f"stage optim, {optimizer}",
                f"{median(alone) / iterations * 1e6:.0f}",
                *(f"{median(fused[k]) / iterations * 1e6:.0f}" for k in (4, 32)),
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    return table(["job", "alone us/step", "K=4 us/step/job", "K=32 us/step/job"], rows)


def main() -> None:
    import torch

    from service.dispatch.costs import MIN_SPEEDUP, best_stack, fuses

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,32,64,128,256,512", help="D_in = H values")
    parser.add_argument("--stacks", default="4,8,16,32", help="stack sizes K")
    parser.add_argument("--optimizers", default="sgd,adam")
    parser.add_argument("--iterations", type=int, default=100, help="at most, per job")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-fixed", action="store_true", help="no fixed-cost table")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = machine()
    sizes = [(int(s), int(s)) for s in args.sizes.split(",")]
    sizes.insert(next((i for i, s in enumerate(sizes) if s[0] >= 1000), len(sizes)), DEFAULT_SIZE)
    stacks = [int(k) for k in args.stacks.split(",")]
    rows, crossings = [], []
    for optimizer in args.optimizers.split(","):
        faster, slower = [], []
        for size in sizes:
            job = fields(size, optimizer, iterations_for(size, args.iterations))
            alone, fused = measure(job, stacks, args.repeats)
            ratios = [median(alone) / median(fused[k]) for k in stacks]
            stack, speedup = best_stack(job, "cpu")
            auto = f"fuse, K={stack} ({speedup:.1f}x)" if fuses("auto", job, "cpu") else "alone"
            rows.append(
                [
                    optimizer,
                    f"{size[0]} x {size[1]}",
                    job["iterations"],
                    f"{median(alone) * 1e3:.1f} ({spread([t * 1e3 for t in alone])})",
                    *(f"{median(fused[k]) * 1e3:.1f}" for k in stacks),
                    " / ".join(f"{r:.2f}" for r in ratios),
                    auto,
                ]
            )
            print(" | ".join(map(str, rows[-1])), flush=True)
            (faster if max(ratios) >= MIN_SPEEDUP else slower).append(f"{size[0]} x {size[1]}")
        crossings.append(
            f"{optimizer}: at least {MIN_SPEEDUP}x at some K for D_in x H = "
            f"{', '.join(faster) or 'none'}; less at every K for {', '.join(slower) or 'none'}"
        )
    body = (
        f"N = 64, D_out = 10, stage {STAGE}, lr 1e-8, 1 torch thread; ms per job (its own "
        f"problem drawn, then trained), medians of {args.repeats} interleaved repeats (alone: "
        f"its range); ratio = alone / fused per job (> 1: fusing faster); `auto` is the "
        f"planner's table (`service.dispatch.costs`) for the cpu queue: fuse or not, the stack "
        f"it plans and the speed-up it expects.\n\n"
        + table(
            [
                "optimizer",
                "D_in x H",
                "iterations",
                "alone ms",
                *(f"K={k} ms/job" for k in stacks),
                "alone / fused, per K",
                "auto",
            ],
            rows,
        )
        + "\n\nCrossover: "
        + "; ".join(crossings)
        + "."
    )
    if not args.skip_fixed:
        body += (
            "\n\nFixed costs per step (D_in = H = 16, N = 64, D_out = 10, 200 iterations, "
            "medians), the table's `alone_overhead` and `stack_overhead`:\n\n"
            + fixed_costs(args.repeats)
        )
    publish("Where fusing pays (CPU)", started, body, record=not args.no_record)


if __name__ == "__main__":
    main()
