"""The data and initial weights every stage starts from."""

from dataclasses import dataclass

import torch
from torch import Tensor

from worker.training.inits import init_weight
from worker.training.spec import TrainSpec


@dataclass(frozen=True)
class Problem:
    """Random regression data and the two-layer network's initial weights."""

    x: Tensor  # (N, D_in)
    y: Tensor  # (N, D_out)
    w1: Tensor  # (D_in, H)
    w2: Tensor  # (H, D_out)


def make_problem(spec: TrainSpec, device: torch.device) -> Problem:
    """Draw the problem from the spec's seed on the CPU, in the seed's order, then move it."""
    # Drawn on the CPU so that every device starts from the same numbers.
    generator = torch.Generator().manual_seed(spec.seed)
    dtype = getattr(torch, spec.dtype)
    x = torch.randn(spec.N, spec.D_in, generator=generator, dtype=dtype)
    y = torch.randn(spec.N, spec.D_out, generator=generator, dtype=dtype)
    w1 = init_weight(spec.init, spec.D_in, spec.H, generator, dtype)
    w2 = init_weight(spec.init, spec.H, spec.D_out, generator, dtype)
    return Problem(x=x.to(device), y=y.to(device), w1=w1.to(device), w2=w2.to(device))
