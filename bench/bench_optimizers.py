"""Optimizer kernels: one default job per optimizer with torch's fused kernel against its loop.

python -m bench.bench_optimizers [--repeats 7] [--device cpu]

Each optimizer trains the default job (stage optim, 64x1000x100x10, 500 iterations) in this
process with one thread, through the real stage code, built as make_optimizer builds it
(`fused=True` where torch has a kernel) and with the fused kernels off (torch's default on the
CPU: one operation at a time). The two alternate, so drift hits both alike; medians.
"""

from __future__ import annotations

import argparse
import time

from bench.report import machine, median, publish, spread, table
from bench.workloads import OPTIMIZERS, train_alone
from worker.training import optimizers


def timed_job(fields: dict, fused: bool) -> float:
    """Seconds to train one job with the fused kernels on or off."""
    kept = optimizers.FUSED
    optimizers.FUSED = kept if fused else ()
    try:
        start = time.perf_counter()
        train_alone(fields)
        return time.perf_counter() - start
    finally:
        optimizers.FUSED = kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    started = machine()
    rows, loop_total, fused_total = [], 0.0, 0.0
    for name in OPTIMIZERS:
        fields = {"stage": "optim", "optimizer": name, "lr": 1e-6, "device": args.device}
        timed_job(fields, True), timed_job(fields, False)  # warm: code loaded, allocator primed
        loop, fused = [], []
        for _ in range(args.repeats):
            loop.append(timed_job(fields, False))
            fused.append(timed_job(fields, True))
        kernel = "fused" if name in optimizers.FUSED else "(none: same code)"
        rows.append(
            [
                name,
                kernel,
                f"{median(loop) * 1e3:.0f}",
                f"{median(fused) * 1e3:.0f}",
                f"{median(loop) / median(fused):.2f}x",
                f"{spread(loop)} / {spread(fused)}",
            ]
        )
        loop_total += median(loop)
        fused_total += median(fused)
    body = (
        f"Default job (stage optim, 64x1000x100x10, 500 iterations, lr 1e-6) on {args.device},"
        f" one thread, {args.repeats} repeats each, alternating; median ms per job.\n\n"
        + table(["optimizer", "kernel", "loop ms", "as built ms", "loop/built", "range s"], rows)
        + f"\n\nA sweep with every optimizer equally often: {loop_total * 1e3:.0f} ms -> "
        f"{fused_total * 1e3:.0f} ms per {len(OPTIMIZERS)} jobs "
        f"(**{loop_total / fused_total:.2f}x**)."
    )
    publish("Fused optimizer kernels", started, body, record=not args.no_record)


if __name__ == "__main__":
    main()
