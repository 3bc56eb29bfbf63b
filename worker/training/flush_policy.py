"""When kept losses flush to the record: every so many steps, after so long, at once at a rung.

One policy for a job alone (`LossBuffer`) and a fused stack (`train_fused`): a job alone is a
stack of one row, its chunk starting where its last flush ended.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FlushPolicy:
    """How often a training flushes, and the steps whose loss flushes as soon as it is kept."""

    every: int = 64
    seconds: float = 0.5
    # The rungs an early-stopping rule reads: a job stopped there trains no further.
    rungs: frozenset[int] = field(default_factory=frozenset)

    def ticks_to_rung(self, firsts: Sequence[int]) -> int:
        """Steps until the first row computes a rung step's loss (0: no rung ahead of any row),
        each row's chunk starting at its step in `firsts`."""
        ahead = [rung - first + 1 for first in firsts for rung in self.rungs if rung >= first]
        return min(ahead, default=0)


class FlushClock:
    """One training's count towards its next flush under a policy."""

    def __init__(self, policy: FlushPolicy, firsts: Sequence[int]) -> None:
        self.policy = policy
        self.ticks = 0
        self._to_rung = 0
        self.restart(firsts)

    def tick(self) -> bool:
        """One more step's loss kept by every row; whether it is time to flush."""
        self.ticks += 1
        policy = self.policy
        return (
            self.ticks >= policy.every
            or self.ticks == self._to_rung
            or time.monotonic() - self._last_flush >= policy.seconds
        )

    def restart(self, firsts: Sequence[int]) -> None:
        """Count again from a flush, the rows' chunks now starting at `firsts`."""
        self.ticks, self._last_flush = 0, time.monotonic()
        self.aim(firsts)

    def aim(self, firsts: Sequence[int]) -> None:
        """Aim at the next rung of rows starting at `firsts` (rows joined since the flush)."""
        self._to_rung = self.policy.ticks_to_rung(firsts)
