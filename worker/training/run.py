"""Training one spec on one device, the entry point the worker's task calls."""

from dataclasses import dataclass

import torch

from worker.training.flush_policy import FlushPolicy
from worker.training.loss_buffer import LossBuffer
from worker.training.problem import make_problem
from worker.training.spec import TrainSpec
from worker.training.stages import STAGES


@dataclass(frozen=True)
class TrainResult:
    """Every stored loss of a bare run, and the step it diverged at, if any."""

    losses: list[float]
    diverged_at: int | None


def train(spec: TrainSpec, device: torch.device, buffer: LossBuffer) -> None:
    """Build the spec's problem on device, run its stage and flush the buffer's last chunk."""
    problem = make_problem(spec, device)
    STAGES[spec.stage](problem, spec, buffer)
    buffer.close()


def train_to_list(spec: TrainSpec, device: torch.device | None = None) -> TrainResult:
    """Train without a database, keeping the losses in memory (for tests and benchmarks)."""
    device = torch.device("cpu") if device is None else device
    losses: list[float] = []

    def keep(first_step: int, chunk: list[float]) -> bool:
        losses.extend(chunk)
        return True

    buffer = LossBuffer(spec.iterations, device, keep, FlushPolicy(every=1024, seconds=60.0))
    train(spec, device, buffer)
    return TrainResult(losses=losses, diverged_at=buffer.diverged_at)
