"""The optimizers a job can name, built as torch builds them."""

import functools
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from service.choices import MOMENTUM_OPTIMIZERS

# The classic SGD-with-momentum default for the two SGD variants with momentum; torch's own is 0.
SGD_MOMENTUM = 0.9
SGD_WITH_MOMENTUM = ("momentum", "nesterov")
# torch's fused kernels update each parameter in one pass instead of one pass per operation:
# the same algorithm, rounding differing by ~1e-7 relative in float32, and a default CPU job
# 3-22% faster (bench/bench_optimizers.py). Plain SGD gains nothing (its update is one
# operation) and keeps torch's default; RMSprop has no fused kernel. Which device types have
# which kernel depends on the torch build (fused Adagrad on CUDA came late): see fused_kernel.
FUSED = ("momentum", "nesterov", "adagrad", "adam", "adamw")
_FUSED_CLASSES = {
    "momentum": torch.optim.SGD,
    "nesterov": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def fused_kernel(name: str, device_type: str) -> bool:
    """Whether this torch has a working fused kernel for the optimizer on this device type."""
    return name in FUSED and _probe_fused(name, device_type)


@functools.cache
def _probe_fused(name: str, device_type: str) -> bool:
    """One real fused step on a one-element parameter, once per (optimizer, device type).

    torch refuses a missing kernel at construction for some optimizers and only at the first
    step() for others, so the probe takes a step rather than trusting the constructor.
    """
    sgd = name in ("momentum", "nesterov")
    extra = {"momentum": SGD_MOMENTUM, "nesterov": name == "nesterov"} if sgd else {}
    try:
        param = nn.Parameter(torch.zeros(1, device=device_type))
        optimizer = _FUSED_CLASSES[name]([param], lr=0.1, fused=True, **extra)
        param.grad = torch.ones_like(param)
        optimizer.step()
    except (RuntimeError, ValueError, TypeError, NotImplementedError):
        return False
    return True


def make_optimizer(
    name: str,
    params: Iterable[nn.Parameter],
    lr: float,
    momentum: float | None = None,
    weight_decay: float | None = None,
) -> torch.optim.Optimizer:
    """Build the named optimizer; momentum and weight decay fall back to the defaults when None."""
    if momentum is not None and name not in MOMENTUM_OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} takes no momentum")
    params = list(params)
    # Any: each constructor below takes its own set of these keywords.
    options: dict[str, Any] = {"lr": lr}
    if name in FUSED:
        device_type = params[0].device.type if params else "cpu"
        # Without the fused kernel, foreach is the next best: each operation over all tensors.
        options["fused" if fused_kernel(name, device_type) else "foreach"] = True
    if weight_decay is not None:
        options["weight_decay"] = weight_decay
    if name in SGD_WITH_MOMENTUM:
        options["momentum"] = SGD_MOMENTUM if momentum is None else momentum
        options["nesterov"] = name == "nesterov"
    elif name == "rmsprop" and momentum is not None:
        options["momentum"] = momentum

    if name == "sgd" or name in SGD_WITH_MOMENTUM:
        return torch.optim.SGD(params, **options)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, **options)
    if name == "adagrad":
        return torch.optim.Adagrad(params, **options)
    if name == "adam":
        return torch.optim.Adam(params, **options)
    if name == "adamw":
        return torch.optim.AdamW(params, **options)
    raise ValueError(f"unknown optimizer {name!r}")
