"""Stage `nn`: the seed's third program, nn.Sequential and nn.MSELoss."""

import torch
from torch import nn

from worker.training.loss_buffer import LossBuffer
from worker.training.problem import Problem
from worker.training.spec import TrainSpec
from worker.training.stages.weights import load_weights


def train(problem: Problem, spec: TrainSpec, buffer: LossBuffer) -> None:
    """Train an nn.Sequential with the plain SGD update written by hand over its parameters."""
    x, y = problem.x, problem.y
    linear1 = nn.Linear(spec.D_in, spec.H, bias=False)
    linear2 = nn.Linear(spec.H, spec.D_out, bias=False)
    model = nn.Sequential(linear1, nn.ReLU(), linear2)
    load_weights(model, linear1, linear2, problem)
    loss_fn = nn.MSELoss(reduction="sum")
    learning_rate = spec.lr
    start = buffer.attach_state(model.state_dict())
    for it in range(start, spec.iterations):
        # Forward pass
        y_pred = model(x)  # (N, D_out)
        loss = loss_fn(y_pred, y)
        if not buffer.keep(it, loss):
            return

        # Backward pass
        loss.backward()

        with torch.no_grad():
            for param in model.parameters():
                assert param.grad is not None  # backward() just filled it
                # The seed's in-place update; torch types Parameter.__isub__ as a plain Tensor.
                param -= learning_rate * param.grad  # type: ignore[misc]
        model.zero_grad()
