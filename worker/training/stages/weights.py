"""Loading the problem's initial weights into an nn model."""

import torch
from torch import nn

from worker.training.problem import Problem


def load_weights(
    model: nn.Module, linear1: nn.Linear, linear2: nn.Linear, problem: Problem
) -> None:
    """Move model to the problem's device and dtype, then copy w1.T and w2.T into its layers."""
    model.to(device=problem.x.device, dtype=problem.x.dtype)
    with torch.no_grad():
        linear1.weight.copy_(problem.w1.t())  # (H, D_in)
        linear2.weight.copy_(problem.w2.t())  # (D_out, H)
