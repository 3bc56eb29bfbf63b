"""Stage `autograd`: the seed's second program, gradients from autograd."""

import torch

from worker.training.loss_buffer import LossBuffer
from worker.training.problem import Problem
from worker.training.spec import TrainSpec


def train(problem: Problem, spec: TrainSpec, buffer: LossBuffer) -> None:
    """Train with loss.backward() and the plain SGD update written by hand."""
    x, y = problem.x, problem.y
    w1 = problem.w1.clone().requires_grad_()  # (D_in, H)
    w2 = problem.w2.clone().requires_grad_()  # (H, D_out)
    learning_rate = spec.lr
    start = buffer.attach_state({"w1": w1, "w2": w2})
    for it in range(start, spec.iterations):
        # Forward pass
        y_pred = x.mm(w1).clamp(min=0).mm(w2)  # (N, D_out)
        loss = (y_pred - y).pow(2).sum()
        if not buffer.keep(it, loss):
            return

        # Backward pass
        loss.backward()

        with torch.no_grad():
            assert w1.grad is not None
            assert w2.grad is not None
            w1 -= learning_rate * w1.grad
            w2 -= learning_rate * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
