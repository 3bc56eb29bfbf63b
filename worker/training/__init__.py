"""The PyTorch training core: one two-layer network, five stages, three factors."""

from worker.training.recorder import LossRecorder
from worker.training.run import TrainResult, train, train_to_list
from worker.training.spec import TrainSpec
from worker.training.stages import STAGES

__all__ = ["STAGES", "LossRecorder", "TrainResult", "TrainSpec", "train", "train_to_list"]
