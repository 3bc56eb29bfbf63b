"""The optimizers a job can name, built as torch builds them."""

from collections.abc import Iterable

import torch
from torch import nn

# The classic SGD-with-momentum default; torch's own is 0.
SGD_MOMENTUM = 0.9
TAKES_MOMENTUM = ("momentum", "nesterov", "rmsprop")


def make_optimizer(
    name: str,
    params: Iterable[nn.Parameter],
    lr: float,
    momentum: float | None = None,
    weight_decay: float | None = None,
) -> torch.optim.Optimizer:
    """Build the named optimizer; momentum and weight decay fall back to the defaults when None."""
    if momentum is not None and name not in TAKES_MOMENTUM:
        raise ValueError(f"optimizer {name!r} takes no momentum")
    options: dict[str, float | bool] = {"lr": lr}
    if weight_decay is not None:
        options["weight_decay"] = weight_decay
    if name in ("momentum", "nesterov"):
        options["momentum"] = SGD_MOMENTUM if momentum is None else momentum
        options["nesterov"] = name == "nesterov"
    elif name == "rmsprop" and momentum is not None:
        options["momentum"] = momentum

    if name in ("sgd", "momentum", "nesterov"):
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
