"""Initial weights for one layer, returned in the seed's (in, out) orientation."""

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

# Drawn on an (out, in) tensor, nn.Linear's layout, so torch's fan_in is the layer's input size.
_LINEAR_LAYOUT: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    # nn.Linear.reset_parameters: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    "default": lambda w, g: nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g),
    "xavier_uniform": lambda w, g: nn.init.xavier_uniform_(w, generator=g),
    "xavier_normal": lambda w, g: nn.init.xavier_normal_(w, generator=g),
    "kaiming_uniform": lambda w, g: nn.init.kaiming_uniform_(w, generator=g),
    "kaiming_normal": lambda w, g: nn.init.kaiming_normal_(w, generator=g),
    "orthogonal": lambda w, g: nn.init.orthogonal_(w, generator=g),
}


def init_weight(
    init: str, fan_in: int, fan_out: int, generator: torch.Generator, dtype: torch.dtype
) -> Tensor:
    """Draw a (fan_in, fan_out) weight by the named init from `generator`."""
    if init == "normal":
        # The seed's torch.randn(D_in, H), number for number.
        return torch.randn(fan_in, fan_out, generator=generator, dtype=dtype)
    if init == "uniform":
        return torch.empty(fan_in, fan_out, dtype=dtype).uniform_(-1, 1, generator=generator)
    if init == "zeros":
        return torch.zeros(fan_in, fan_out, dtype=dtype)
    if init in _LINEAR_LAYOUT:
        weight = torch.empty(fan_out, fan_in, dtype=dtype)  # (out, in)
        _LINEAR_LAYOUT[init](weight, generator)
        return weight.t().contiguous()  # (in, out)
    raise ValueError(f"unknown init {init!r}")
