"""The optimizers a job can name, built as torch builds them."""

from collections.abc import Iterable

import torch
from torch import nn

from service.choices import MOMENTUM_OPTIMIZERS

# The classic SGD-with-momentum default for the two SGD variants with momentum; torch's own is 0.
SGD_MOMENTUM = 0.9
SGD_WITH_MOMENTUM = ("momentum", "nesterov")
# torch's fused kernels update each parameter in one pass instead of one pass per operation:
# the same algorithm, rounding differing by ~1e-7 relative in float32, and a default CPU job
# 3-22% faster (bench/bench_optimizers.py). Plain SGD gains nothing (its update is one
# operation) and keeps torch's default; RMSprop has no fused kernel.
FUSED = ("momentum", "nesterov", "adagrad", "adam", "adamw")


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
    options: dict[str, float | bool] = {"lr": lr, "fused": True} if name in FUSED else {"lr": lr}
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
