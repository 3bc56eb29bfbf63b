"""How one job's training ended, whether it trained alone or in a fused stack."""

from dataclasses import dataclass


@dataclass
class Outcome:
    """How one job's training ended: steps stored, divergence, cancellation, hand-back."""

    steps: int = 0
    diverged_at: int | None = None
    stopped: bool = False
    # Checkpointed and handed back unfinished (the worker is shutting down).
    yielded: bool = False
