"""The five stages: the seed's one network written five ways."""

from collections.abc import Callable

from worker.training.loss_buffer import LossBuffer
from worker.training.problem import Problem
from worker.training.spec import TrainSpec
from worker.training.stages import autograd, module, nn, optim, tensors

Stage = Callable[[Problem, TrainSpec, LossBuffer], None]

STAGES: dict[str, Stage] = {
    "tensors": tensors.train,
    "autograd": autograd.train,
    "nn": nn.train,
    "optim": optim.train,
    "module": module.train,
}
