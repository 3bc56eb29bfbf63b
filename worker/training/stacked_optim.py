"""One optimizer update for K stacked models, each with its own hyperparameters.

torch.optim takes one learning rate per parameter group; here every hyperparameter is a (K, 1, 1)
tensor so one kernel updates K jobs at once. The formulas are torch.optim's single-tensor ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from service.dispatch.costs import STATE_SLOTS
from worker.training.optimizers import SGD_MOMENTUM, SGD_WITH_MOMENTUM
from worker.training.spec import TrainSpec

# torch.optim's defaults for what a job cannot set.
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-8
ADAGRAD_EPS = 1e-10
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
ADAMW_WEIGHT_DECAY = 1e-2
# The per-row settings every optimizer keeps as (K, 1, 1) columns.
HYPERPARAMETERS = ("lr", "weight_decay", "momentum", "beta1", "beta2", "eps")


def _column(values: list[float], like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Per-job scalars as a (K, 1, 1) tensor broadcasting over each job's weights."""
    return torch.tensor(values, dtype=dtype or like.dtype, device=like.device).view(-1, 1, 1)


class StackedOptimizer:
    """The update of one optimizer type applied to K models' stacked weights."""

    lr: Tensor
    weight_decay: Tensor
    momentum: Tensor
    beta1: Tensor
    beta2: Tensor
    eps: Tensor

    def __init__(self, specs: list[TrainSpec], params: list[Tensor]) -> None:
        names = {spec.optimizer for spec in specs}
        if len(names) != 1:
            raise ValueError(f"one optimizer type per batch, got {sorted(names)}")
        self.name = names.pop()
        self._like = params[0]  # each param is (K, in, out)
        for name, column in self._columns(specs).items():
            setattr(self, name, column)
        slots = STATE_SLOTS[self.name]
        self.state = [[torch.zeros_like(p) for _ in range(slots)] for p in params]
        # Each row's own count of updates: rows that joined later are at earlier steps.
        self.steps = torch.zeros(len(specs), 1, 1, dtype=torch.float64, device=self._like.device)

    def _columns(self, specs: list[TrainSpec]) -> dict[str, Tensor]:
        """The per-row hyperparameters of these specs, as (K, 1, 1) columns."""
        like, count = self._like, len(specs)
        default_wd = ADAMW_WEIGHT_DECAY if self.name == "adamw" else 0.0
        default_momentum = SGD_MOMENTUM if self.name in SGD_WITH_MOMENTUM else 0.0
        eps = ADAM_EPS if "adam" in self.name else RMSPROP_EPS
        return {
            "lr": _column([s.lr for s in specs], like),
            "weight_decay": _column(
                [default_wd if s.weight_decay is None else s.weight_decay for s in specs], like
            ),
            "momentum": _column(
                [default_momentum if s.momentum is None else s.momentum for s in specs], like
            ),
            # Betas stay in float64 so the bias corrections round as torch's Python floats do.
            "beta1": _column([ADAM_BETAS[0]] * count, like, torch.float64),
            "beta2": _column([ADAM_BETAS[1]] * count, like, torch.float64),
            "eps": _column([ADAGRAD_EPS if self.name == "adagrad" else eps] * count, like),
        }

    def keep(self, index: Tensor) -> None:
        """Drop the models not in index (finished jobs) from the hyperparameters and state."""
        for name in (*HYPERPARAMETERS, "steps"):
            setattr(self, name, getattr(self, name).index_select(0, index))
        self.state = [[s.index_select(0, index) for s in slots] for slots in self.state]

    def add(self, specs: list[TrainSpec]) -> None:
        """Append rows for new jobs (a refilled stack): their own settings, fresh state."""
        if {spec.optimizer for spec in specs} != {self.name}:
            raise ValueError(f"rows added to a {self.name} stack must use {self.name}")
        for name, column in self._columns(specs).items():
            setattr(self, name, torch.cat([getattr(self, name), column]))
        zeros = torch.zeros(len(specs), 1, 1, dtype=torch.float64, device=self.steps.device)
        self.steps = torch.cat([self.steps, zeros])
        self.state = [
            [torch.cat([s, s.new_zeros((len(specs), *s.shape[1:]))]) for s in slots]
            for slots in self.state
        ]

    def resume(self, steps: list[int], state: list[list[Tensor]]) -> None:
        """Continue from checkpoints: row k has done `steps[k]` updates, with these slots."""
        if [len(slots) for slots in state] != [len(slots) for slots in self.state]:
            raise ValueError(f"checkpoint does not hold {self.name}'s optimizer state")
        self.steps = _column([float(step) for step in steps], self.steps, torch.float64)
        self.state = [[s.clone() for s in slots] for slots in state]

    @torch.no_grad()
    def step(self, params: list[Tensor], grads: list[Tensor]) -> None:
        """Update params in place from grads, as torch.optim's step would for each job."""
        self.steps.add_(1)
        for param, grad, state in zip(params, grads, self.state, strict=True):
            getattr(self, f"_{self.name}")(param, grad, state)

    def _decayed(self, param: Tensor, grad: Tensor) -> Tensor:
        # Coupled L2 decay, as every optimizer but AdamW applies it.
        return grad + self.weight_decay * param

    def _sgd(self, param: Tensor, grad: Tensor, state: list[Tensor]) -> None:
        param.sub_(self.lr * self._decayed(param, grad))

    def _momentum(self, param: Tensor, grad: Tensor, state: list[Tensor]) -> None:
        d_p = self._decayed(param, grad)
        # torch clones d_p into the buffer at step 1: momentum * 0 + d_p is exactly that.
        buf = state[0].mul_(self.momentum).add_(d_p)
        param.sub_(self.lr * buf)

    def _nesterov(self, param: Tensor, grad: Tensor, state: list[Tensor]) -> None:
        d_p = self._decayed(param, grad)
        buf = state[0].mul_(self.momentum).add_(d_p)
        param.sub_(self.lr * (d_p + self.momentum * buf))

    def _rmsprop(self, param: Tensor, grad: Tensor, state: list[Tensor]) -> None:
        square_avg, buf = state
        g = self._decayed(param, grad)
        square_avg.mul_(RMSPROP_ALPHA).addcmul_(g, g, value=1 - RMSPROP_ALPHA)
        avg = square_avg.sqrt().add_(self.eps)
        # With momentum 0 the buffer is just g / avg, torch's momentum-free update.
        buf.mul_(self.momentum).add_(g / avg)
        param.sub_(self.lr * buf)

    def _adagrad(self, param: Tensor, grad: Tensor, state: list[Tensor]) -> None:
        g = self._decayed(param, grad)
        state_sum = state[0].addcmul_(g, g)
        std = state_sum.sqrt().add_(self.eps)
        param.sub_(self.lr * (g / std))

    def _adam(
        self, param: Tensor, grad: Tensor, state: list[Tensor], decoupled: bool = False
    ) -> None:
        exp_avg, exp_avg_sq = state
        if decoupled:
            param.mul_(1 - self.lr * self.weight_decay)
            g = grad
        else:
            g = self._decayed(param, grad)
        dtype = param.dtype
        exp_avg.lerp_(g, (1 - self.beta1).to(dtype))
        exp_avg_sq.mul_(self.beta2.to(dtype)).addcmul_(g, g * (1 - self.beta2).to(dtype))
        bias_correction1 = 1 - self.beta1**self.steps
        bias_correction2_sqrt = (1 - self.beta2**self.steps).sqrt().to(dtype)
        step_size = (self.lr.double() / bias_correction1).to(dtype)
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        param.sub_(step_size * (exp_avg / denom))

    def _adamw(self, param: Tensor, grad: Tensor, state: list[Tensor]) -> None:
        self._adam(param, grad, state, decoupled=True)
