"""The loss buffer: losses kept on the device, flushed in chunks as the flush policy says."""

import math

import pytest
import torch

from tests.worker.training.test_stages import SMALL_DIMS, make_spec
from worker.training import FlushPolicy, LossBuffer, train


class Chunks:
    """A flush callback that keeps what it is handed and can ask to stop."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple[int, list[float]]] = []
        self.stop_after = stop_after

    def __call__(self, first_step: int, losses: list[float]) -> bool:
        self.calls.append((first_step, losses))
        return self.stop_after is None or len(self.calls) < self.stop_after

    @property
    def losses(self) -> list[float]:
        """Every flushed loss, in order."""
        return [loss for _, losses in self.calls for loss in losses]


def keep_all(buffer: LossBuffer, values: list[float], start_step: int = 0) -> list[bool]:
    """Keep values as consecutive steps; what each keep call returned."""
    return [
        buffer.keep(step, torch.tensor(value))
        for step, value in enumerate(values, start=start_step)
    ]


def test_buffer_flushes_contiguous_chunks():
    chunks = Chunks()
    buffer = LossBuffer(100, torch.device("cpu"), chunks, FlushPolicy(every=7, seconds=60))
    values = [float(i) for i in range(100)]

    assert all(keep_all(buffer, values))
    buffer.close()

    assert [first for first, _ in chunks.calls] == list(range(0, 100, 7))
    assert all(len(losses) <= 7 for _, losses in chunks.calls)
    assert chunks.losses == values
    assert buffer.diverged_at is None


def test_buffer_flushes_on_time():
    chunks = Chunks()
    buffer = LossBuffer(5, torch.device("cpu"), chunks, FlushPolicy(every=1000, seconds=0))

    keep_all(buffer, [1.0, 2.0, 3.0])

    assert chunks.calls == [(0, [1.0]), (1, [2.0]), (2, [3.0])]


def test_buffer_flushes_as_soon_as_a_rung_steps_loss_is_kept():
    chunks = Chunks(stop_after=2)  # told to stop at its second flush: pruned at rung 6
    policy = FlushPolicy(every=64, seconds=60, rungs=frozenset({2, 6, 18}))
    buffer = LossBuffer(100, torch.device("cpu"), chunks, policy)

    returned = keep_all(buffer, [float(i) for i in range(20)])

    assert [(first, len(losses)) for first, losses in chunks.calls] == [(0, 3), (3, 4)]
    assert returned == [True] * 6 + [False] * 14  # no step trained past the one rung 6 reads


def test_buffer_stops_when_flush_says_so():
    chunks = Chunks(stop_after=2)
    buffer = LossBuffer(20, torch.device("cpu"), chunks, FlushPolicy(every=3, seconds=60))

    returned = keep_all(buffer, [1.0] * 8)
    buffer.close()

    assert returned == [True] * 5 + [False] * 3
    assert buffer.stopped
    assert buffer.diverged_at is None
    assert [first for first, _ in chunks.calls] == [0, 3]


@pytest.mark.parametrize("flush_every", [3, 100])
def test_buffer_keeps_only_losses_before_a_non_finite_one(flush_every):
    chunks = Chunks()
    buffer = LossBuffer(10, torch.device("cpu"), chunks, FlushPolicy(every=flush_every))

    keep_all(buffer, [4.0, 3.0, 2.0, 1.0, math.inf, math.nan])
    buffer.close()

    assert chunks.losses == [4.0, 3.0, 2.0, 1.0]
    assert buffer.diverged_at == 4
    assert not buffer.keep(6, torch.tensor(1.0))


def test_buffer_keeps_float32_and_float64_losses_exactly():
    chunks = Chunks()
    buffer = LossBuffer(2, torch.device("cpu"), chunks)
    single = torch.tensor(0.1, dtype=torch.float32)
    double = torch.tensor(0.1, dtype=torch.float64)

    buffer.keep(0, single)
    buffer.keep(1, double)
    buffer.close()

    assert chunks.losses == [single.item(), double.item()]


def test_buffer_resumes_from_start_step():
    chunks = Chunks()
    buffer = LossBuffer(10, torch.device("cpu"), chunks, FlushPolicy(every=4), start_step=6)

    keep_all(buffer, [1.0, 2.0, 3.0, 4.0], start_step=6)
    buffer.close()

    assert chunks.calls == [(6, [1.0, 2.0, 3.0, 4.0])]
    with pytest.raises(ValueError, match="expected step"):
        buffer.keep(3, torch.tensor(1.0))


def test_train_stops_when_cancelled():
    spec = make_spec(iterations=50, **SMALL_DIMS)
    chunks = Chunks(stop_after=1)
    buffer = LossBuffer(50, torch.device("cpu"), chunks, FlushPolicy(every=10))

    train(spec, torch.device("cpu"), buffer)

    assert buffer.stopped
    assert chunks.calls[0][0] == 0
    assert len(chunks.calls) == 1
    assert len(chunks.calls[0][1]) == 10
