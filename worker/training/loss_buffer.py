"""Per-step losses buffered on the training device and flushed to the record in chunks."""

from collections.abc import Callable

import torch
from torch import Tensor

from worker.training.checkpoints import Checkpointer
from worker.training.flush_policy import FlushClock, FlushPolicy
from worker.training.outcome import Outcome

# flush(first_step, losses) records the chunk; returning False asks training to stop.
Flush = Callable[[int, list[float]], bool]


def finite_prefix(chunk: Tensor) -> tuple[Tensor, int | None]:
    """A chunk's losses before its first non-finite one, and that one's index (None: none)."""
    finite = torch.isfinite(chunk)
    if bool(finite.all()):
        return chunk, None
    bad = int((~finite).nonzero()[0])
    return chunk[:bad], bad


class LossBuffer:
    """Keep every step's loss without a device sync per step; flush in chunks."""

    def __init__(
        self,
        iterations: int,
        device: torch.device,
        flush: Flush,
        policy: FlushPolicy | None = None,
        start_step: int = 0,
        checkpointer: Checkpointer | None = None,
        should_yield: Callable[[], bool] = lambda: False,
    ) -> None:
        self._flush = flush
        self._should_yield = should_yield
        self._checkpointer = checkpointer
        self._start_step = start_step
        # float64 holds a float32 loss exactly, so the stored history is what the stage computed.
        self._losses = torch.empty(iterations - start_step, dtype=torch.float64, device=device)
        self._next_step = start_step
        self._flushed_to = start_step
        self._clock = FlushClock(policy or FlushPolicy(), [start_step])
        self.diverged_at: int | None = None
        self.stopped = False
        # Checkpointed and handed back unfinished (the worker is shutting down).
        self.yielded = False

    @property
    def finished(self) -> bool:
        """Whether training should stop: cancelled, diverged or handed back."""
        return self.stopped or self.yielded or self.diverged_at is not None

    def outcome(self) -> Outcome:
        """How the training ended, as the record finishes it."""
        return Outcome(diverged_at=self.diverged_at, stopped=self.stopped, yielded=self.yielded)

    def attach_state(
        self, tensors: dict[str, Tensor], optimizer: torch.optim.Optimizer | None = None
    ) -> int:
        """Let checkpoints save this training state (loaded from one when resuming); first step."""
        if self._checkpointer is None:
            return self._start_step
        start = self._checkpointer.attach(tensors, optimizer)
        if start != self._start_step:
            raise ValueError(f"checkpoint resumes at step {start}, buffer at {self._start_step}")
        return start

    def keep(self, step: int, loss: Tensor) -> bool:
        """Keep step's loss (a 0-dim tensor); False when training should stop."""
        if self.finished:
            return False
        if step != self._next_step:
            raise ValueError(f"expected step {self._next_step}, got {step}")
        leaving = self._should_yield()
        checkpointer = self._checkpointer
        if checkpointer is not None and (
            checkpointer.due(step) or (leaving and checkpointer.attached)
        ):
            # The state now is the one before step's update: store the steps before it, then it.
            self._flush_pending()
            if self.finished:
                return False
            checkpointer.save(step)
        if leaving:
            self._flush_pending()
            self.yielded = True
            return False
        self._losses[step - self._start_step].copy_(loss.detach())
        self._next_step = step + 1
        if self._clock.tick():
            self._flush_pending()
        return not self.finished

    def close(self) -> None:
        """Flush the steps kept since the last flush."""
        if not self.finished and self._next_step > self._flushed_to:
            self._flush_pending()

    def _flush_pending(self) -> None:
        """Copy the pending chunk to the CPU and hand its finite prefix to flush."""
        first = self._flushed_to
        chunk = self._losses[first - self._start_step : self._next_step - self._start_step].cpu()
        chunk, bad = finite_prefix(chunk)
        if bad is not None:
            self.diverged_at = first + bad
        self._flushed_to = self._next_step
        self._clock.restart([self._flushed_to])
        if len(chunk) and not self._flush(first, chunk.tolist()):
            self.stopped = True
