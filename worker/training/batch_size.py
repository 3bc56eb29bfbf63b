"""How many jobs one fused stack holds on a device: memory on a GPU, cache on a CPU."""

from __future__ import annotations

from pathlib import Path

import torch

from worker.training.spec import TrainSpec
from worker.training.stacked_optim import STATE_SLOTS

MAX_FUSED = 1024
# Where a stack of small jobs still runs from cache; past it fusing gains little on a CPU.
DEFAULT_CPU_CACHE = 8 * 2**20
GPU_MEMORY_SHARE = 0.5


def bytes_per_job(spec: TrainSpec) -> int:
    """Device bytes one job adds to a fused stack: data, weights, grads, state, activations."""
    element = torch.finfo(getattr(torch, spec.dtype)).bits // 8
    weights = spec.D_in * spec.H + spec.H * spec.D_out
    data = spec.N * (spec.D_in + spec.D_out)
    # h, h_relu, grad_h and its mask; y_pred, diff and grad_y_pred.
    activations = 4 * spec.N * spec.H + 3 * spec.N * spec.D_out
    elements = data + weights * (2 + STATE_SLOTS[spec.optimizer]) + activations
    return element * elements + 8 * 64  # and its row of the loss buffer


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
