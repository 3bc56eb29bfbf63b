"""Stage `nn`: the seed's third program, nn.Sequential and nn.MSELoss."""

import torch
from torch import nn

from worker.training.problem import Problem
from worker.training.recorder import LossRecorder
from worker.training.spec import TrainSpec
from worker.training.stages.weights import load_weights


def train(problem: Problem, spec: TrainSpec, recorder: LossRecorder) -> None:
    """Train an nn.Sequential with the plain SGD update written by hand over its parameters."""
    x, y = problem.x, problem.y
    model = nn.Sequential(
        nn.Linear(spec.D_in, spec.H, bias=False),
        nn.ReLU(),
        nn.Linear(spec.H, spec.D_out, bias=False),
    )
    load_weights(model, model[0], model[2], problem)
    loss_fn = nn.MSELoss(reduction="sum")
    learning_rate = spec.lr
    start = recorder.attach_state(model.state_dict())
    for it in range(start, spec.iterations):
        # Forward pass
        y_pred = model(x)  # (N, D_out)
        loss = loss_fn(y_pred, y)
        if not recorder.record(it, loss):
            return

        # Backward pass
        loss.backward()

        with torch.no_grad():
            for param in model.parameters():
                param -= learning_rate * param.grad
        model.zero_grad()
