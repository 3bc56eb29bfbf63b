"""Benchmark output: a printed table, and the same block appended to bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    """The machine in one line: cores, load, torch version, device."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"nproc {os.cpu_count()}, load average {load} at start, torch {torch.__version__}, "
        f"python {platform.python_version()}, {device}"
    )


def median(values: list[float]) -> float:
    """The median of values."""
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """min..max of values, to say how noisy a measurement was."""
    return f"{min(values):.3g}..{max(values):.3g}" if values else "-"


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def publish(title: str, started: str, body: str, record: bool = True) -> None:
    """Print the block and append it to RESULTS.md with the command that produced it."""
    script = Path(sys.argv[0])
    program = f"-m bench.{script.stem}" if script.parent == RESULTS.parent else str(script)
    command = " ".join(["python", program, *map(shlex.quote, sys.argv[1:])])
    block = (
        f"\n## {title}\n\n`{command}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"Machine: {started}\n\n{body}\n"
    )
    print(block)
    if not record:
        return
    with RESULTS.open("a") as out:
        out.write(block)
