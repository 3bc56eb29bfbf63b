"""The PyTorch training core: one two-layer network, five stages, three factors."""

from worker.training.flush_policy import FlushPolicy
from worker.training.loss_buffer import LossBuffer
from worker.training.run import TrainResult, train, train_to_list
from worker.training.spec import TrainSpec
from worker.training.stages import STAGES

__all__ = [
    "STAGES",
    "FlushPolicy",
    "LossBuffer",
    "TrainResult",
    "TrainSpec",
    "train",
    "train_to_list",
]
