"""Refilling: the rows jobs leave in a fused stack taken by queued jobs of the same sweep."""

from __future__ import annotations

import contextlib
import logging
import time

import torch

from service.dispatch.fusing import batch_key
from worker.attempts.claims import refill_claims
from worker.attempts.planning import QueuedJob
from worker.attempts.record import mark_started_on
from worker.attempts.run import Run, crash_if_told
from worker.attempts.training_record import TrainingRecord
from worker.training import TrainSpec
from worker.watchdog import StackLimits

log = logging.getLogger(__name__)


class Refiller:
    """Fills the rows jobs left in a fused stack with queued jobs of the same sweep.

    A pruned, cancelled, diverged or finished job frees its row at a flush; the next queued
    job of its sweep that fuses with the stack takes it there, claimed like any job (lease,
    attempt, heartbeat, its own soft and hard limits) and trained from step 0 beside the
    others. A stack stops refilling when half its message's time limit is spent, so Celery's
    limit on the message (the hard limit x its job count) never cuts a healthy stack.
    """

    def __init__(
        self, run: Run, record: TrainingRecord, limits: StackLimits, sweep_id: int, key: tuple
    ) -> None:
        self.run, self.record, self.limits = run, record, limits
        self.sweep_id, self.key = sweep_id, key
        hard = run.config.job_hard_limit_seconds
        budget = hard * len(record.claims) / 2 if hard > 0 else float("inf")
        self.until = time.monotonic() + budget
        self.ran_on = ""
        self.holding: contextlib.ExitStack | None = None

    @classmethod
    def of(
        cls, run: Run, record: TrainingRecord, limits: StackLimits, first: QueuedJob
    ) -> Refiller | None:
        """A refiller for a stack whose jobs all belong to one sweep (None otherwise)."""
        sweeps = {claim.sweep_id for claim in record.claims}
        sweep_id = sweeps.pop() if len(sweeps) == 1 else None
        if sweep_id is None:
            return None
        return cls(run, record, limits, sweep_id, batch_key(first.fields, first.queue))

    def __call__(self, running: list[int], free: int) -> list[TrainSpec]:
        """Claims for up to `free` rows; the specs they train (job indices follow on)."""
        claims = self.record.claims
        self.limits.release([claims[k].job_id for k in running])
        if time.monotonic() > self.until or self.holding is None:
            return []
        config = self.run.config
        taken = self.run.transaction(
            refill_claims,
            self.sweep_id,
            self.key,
            free,
            self.run.worker,
            config.lease_seconds,
            config.max_attempts,
            len(running),
        )
        if not taken:
            return []
        joining = [claim for claim, _ in taken]
        log.info(
            "stack of sweep %s refilled with jobs %s", self.sweep_id, [c.job_id for c in joining]
        )
        for _, fields in taken:
            crash_if_told(fields.get("name"))
        self.holding.enter_context(self.run.beat.holding(joining))
        self.limits.start([claim.job_id for claim in joining])
        self.record.add(joining)
        self.run.transaction(mark_started_on, joining, self.ran_on, torch.__version__)
        return [TrainSpec.from_fields(fields) for _, fields in taken]
