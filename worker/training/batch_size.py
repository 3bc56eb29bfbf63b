"""How many jobs one fused stack holds on a device: memory on a GPU, cache on a CPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from service.dispatch.costs import bytes_per_job as job_bytes
from worker.training.spec import TrainSpec

MAX_FUSED = 1024
# Where a stack of small jobs still runs from cache; past it fusing gains little on a CPU.
DEFAULT_CPU_CACHE = 8 * 2**20
GPU_MEMORY_SHARE = 0.5
# A job's row of the stack's on-device loss buffer (64 float64 steps between flushes).
LOSS_ROW_BYTES = 8 * 64


def bytes_per_job(spec: TrainSpec) -> int:
    """Device bytes one job adds to a fused stack: the cost model's, and its loss buffer row."""
    return job_bytes(dataclasses.asdict(spec)) + LOSS_ROW_BYTES


def cpu_cache_bytes() -> int:
    """The largest CPU cache this machine reports (Linux sysfs), else a common size."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=DEFAULT_CPU_CACHE)


def fused_batch_size(spec: TrainSpec, device: torch.device, cap: int = MAX_FUSED) -> int:
    """The number of jobs like spec to stack on device."""
    per_job = bytes_per_job(spec)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        budget = int(free * GPU_MEMORY_SHARE)
    else:
        budget = cpu_cache_bytes()
    return max(1, min(cap, budget // per_job))
