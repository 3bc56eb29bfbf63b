"""Checkpoints: a run resumed from a snapshot continues exactly as the uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from worker.training import FlushPolicy, LossBuffer, TrainSpec, train, train_to_list
from worker.training.checkpoints import Checkpointer, Snapshot
from worker.training.snapshot import pack, unpack

CASES = [
    ("tensors", "sgd"),
    ("autograd", "sgd"),
    ("nn", "sgd"),
    ("optim", "sgd"),
    ("optim", "momentum"),
    ("optim", "adam"),
    ("module", "adamw"),
    ("module", "rmsprop"),
]


def small_spec(stage: str, optimizer: str, iterations: int = 60) -> TrainSpec:
    lr = 1e-3 if optimizer in ("adam", "adamw", "rmsprop") else 1e-4
    init = "default" if stage == "module" else "normal"
    return TrainSpec(stage, optimizer, init, lr, iterations, 8, 20, 6, 3, seed=11)


def run_until(spec: TrainSpec, stop_after: int, every: int) -> tuple[list[float], list[Snapshot]]:
    """Train with a checkpoint every `every` steps, abandoning the run after `stop_after` steps."""
    losses: list[float] = []
    snapshots: list[Snapshot] = []

    def keep(first: int, chunk: list[float]) -> bool:
        losses.extend(chunk)
        return len(losses) < stop_after

    checkpointer = Checkpointer(lambda s, b, lay: snapshots.append(Snapshot(s, b, lay)), every)
    policy = FlushPolicy(every=5, seconds=60.0)
    buffer = LossBuffer(spec.iterations, torch.device("cpu"), keep, policy, 0, checkpointer)
    train(spec, torch.device("cpu"), buffer)
    return losses, snapshots


@pytest.mark.parametrize(("stage", "optimizer"), CASES)
def test_resumed_run_equals_uninterrupted_run_bitwise(stage: str, optimizer: str) -> None:
    spec = small_spec(stage, optimizer)
    reference = train_to_list(spec).losses
    # Given a run that dies after 37 steps with a checkpoint every 10
    before, snapshots = run_until(spec, 37, every=10)
    assert [s.step for s in snapshots] == [10, 20, 30]
    last = snapshots[-1]
    # When a new attempt resumes from the last checkpoint
    after: list[float] = []
    buffer = LossBuffer(
        spec.iterations,
        torch.device("cpu"),
        lambda first, chunk: after.extend(chunk) or True,
        start_step=last.step,
        checkpointer=Checkpointer(lambda *a: None, initial=last),
    )
    train(spec, torch.device("cpu"), buffer)
    # Then the rows before the checkpoint plus the resumed ones are the uninterrupted history
    assert before[: last.step] + after == reference


def test_snapshot_round_trips_dtypes_and_shapes() -> None:
    tensors = {
        "a": torch.randn(3, 4, dtype=torch.float64),
        "b": torch.tensor(7.0),
        "c": torch.empty(0, 2),
        "d": torch.arange(5),
    }
    blob, layout = pack(tensors, {"k": 1})
    back = unpack(blob, layout)
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype
        assert torch.equal(back[name], tensor)
    assert layout["extra"] == {"k": 1}


def test_snapshot_refuses_a_layout_outside_the_blob_or_odd_dtype() -> None:
    blob, layout = pack({"a": torch.ones(4)}, {})
    layout["tensors"][0]["nbytes"] = 1000
    with pytest.raises(ValueError, match="lies outside the blob"):
        unpack(blob, layout)
    layout["tensors"][0].update(nbytes=16, dtype="object")
    with pytest.raises(KeyError):
        unpack(blob, layout)


@pytest.mark.parametrize(("stage", "optimizer"), CASES)
def test_a_run_asked_to_yield_checkpoints_where_its_losses_end(stage: str, optimizer: str) -> None:
    spec = small_spec(stage, optimizer)
    reference = train_to_list(spec).losses
    # Given a run with no checkpoint due (every 1,000 steps) that is asked to stop at step 23
    losses: list[float] = []
    snapshots: list[Snapshot] = []
    steps = iter(range(1000))
    buffer = LossBuffer(
        spec.iterations,
        torch.device("cpu"),
        lambda first, chunk: losses.extend(chunk) or True,
        FlushPolicy(every=5, seconds=60.0),
        checkpointer=Checkpointer(lambda s, b, lay: snapshots.append(Snapshot(s, b, lay)), 1000),
        should_yield=lambda: next(steps) == 23,
    )
    train(spec, torch.device("cpu"), buffer)
    # Then it saved once, at the step its stored losses reach, and stopped there
    assert buffer.yielded
    assert [s.step for s in snapshots] == [23]
    assert losses == reference[:23]
    # and the next attempt resumes from there to the uninterrupted history
    after: list[float] = []
    resumed = LossBuffer(
        spec.iterations,
        torch.device("cpu"),
        lambda first, chunk: after.extend(chunk) or True,
        start_step=23,
        checkpointer=Checkpointer(lambda *a: None, initial=snapshots[0]),
    )
    train(spec, torch.device("cpu"), resumed)
    assert losses + after == reference
