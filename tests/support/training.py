"""A plain torch training loop for the tests that check optimizers against each other."""

from __future__ import annotations

import torch
from torch import nn


def summed_squared_losses(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int
) -> torch.Tensor:
    """Each step's summed squared error, before that step's update."""
    losses = []
    for _ in range(steps):
        loss = (model(x) - y).pow(2).sum()
        losses.append(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.stack(losses)
