"""Stage `optim`: the seed's fourth program, nn.Sequential stepped by a torch.optim optimizer."""

from torch import nn

from worker.training.loss_buffer import LossBuffer
from worker.training.optimizers import make_optimizer
from worker.training.problem import Problem
from worker.training.spec import TrainSpec
from worker.training.stages.weights import load_weights


def train(problem: Problem, spec: TrainSpec, buffer: LossBuffer) -> None:
    """Train an nn.Sequential with the spec's optimizer."""
    x, y = problem.x, problem.y
    linear1 = nn.Linear(spec.D_in, spec.H, bias=False)
    linear2 = nn.Linear(spec.H, spec.D_out, bias=False)
    model = nn.Sequential(linear1, nn.ReLU(), linear2)
    load_weights(model, linear1, linear2, problem)
    loss_fn = nn.MSELoss(reduction="sum")
    optimizer = make_optimizer(
        spec.optimizer, model.parameters(), spec.lr, spec.momentum, spec.weight_decay
    )
    start = buffer.attach_state(model.state_dict(), optimizer)
    for it in range(start, spec.iterations):
        # Forward pass
        y_pred = model(x)  # (N, D_out)
        loss = loss_fn(y_pred, y)
        if not buffer.keep(it, loss):
            return

        optimizer.zero_grad()
        # Backward pass
        loss.backward()
        optimizer.step()
