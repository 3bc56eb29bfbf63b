"""Stage `module`: the seed's fifth program, a custom nn.Module stepped by an optimizer."""

from torch import Tensor, nn

from worker.training.loss_buffer import LossBuffer
from worker.training.optimizers import make_optimizer
from worker.training.problem import Problem
from worker.training.spec import TrainSpec
from worker.training.stages.weights import load_weights


class TwoLayerNet(nn.Module):
    """Linear, ReLU, Linear, without biases."""

    def __init__(self, D_in: int, H: int, D_out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(D_in, H, bias=False)
        self.linear2 = nn.Linear(H, D_out, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Map (N, D_in) inputs to (N, D_out) predictions."""
        return self.linear2(self.linear1(x).clamp(min=0))


def train(problem: Problem, spec: TrainSpec, buffer: LossBuffer) -> None:
    """Train a TwoLayerNet with the spec's optimizer."""
    x, y = problem.x, problem.y
    model = TwoLayerNet(spec.D_in, spec.H, spec.D_out)
    load_weights(model, model.linear1, model.linear2, problem)
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
