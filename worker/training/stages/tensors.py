"""Stage `tensors`: the seed's first program, forward and backward written by hand."""

from worker.training.loss_buffer import LossBuffer
from worker.training.problem import Problem
from worker.training.spec import TrainSpec


def train(problem: Problem, spec: TrainSpec, buffer: LossBuffer) -> None:
    """Train with hand-written gradients and the plain SGD update."""
    x, y = problem.x, problem.y
    w1, w2 = problem.w1.clone(), problem.w2.clone()
    learning_rate = spec.lr
    start = buffer.attach_state({"w1": w1, "w2": w2})
    for it in range(start, spec.iterations):
        # Forward pass
        h = x.mm(w1)  # (N, H)
        h_relu = h.clamp(min=0)  # (N, H)
        y_pred = h_relu.mm(w2)  # (N, D_out)
        loss = (y_pred - y).pow(2).sum()
        if not buffer.keep(it, loss):
            return

        # Backward pass
        grad_y_pred = 2.0 * (y_pred - y)  # (N, D_out)
        grad_w2 = h_relu.t().mm(grad_y_pred)  # (H, D_out)
        grad_h_relu = grad_y_pred.mm(w2.t())  # (N, H)
        grad_h = grad_h_relu.clone()
        grad_h[h < 0] = 0
        grad_w1 = x.t().mm(grad_h)  # (D_in, H)

        w1 -= learning_rate * grad_w1
        w2 -= learning_rate * grad_w2
