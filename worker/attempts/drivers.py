"""Drivers: a claimed training handed to its training function, alone or as a fused stack."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from service.config import Config
from service.sweeps.early_stop import flush_steps
from worker import shutdown
from worker.attempts.claims import Claim
from worker.attempts.refill import Refiller
from worker.attempts.training_record import TrainingRecord
from worker.training import FlushPolicy, LossBuffer, TrainSpec, train
from worker.training.checkpoints import Checkpointer, Snapshot, StackCheckpointer
from worker.training.fused import train_fused
from worker.training.outcome import Outcome

log = logging.getLogger(__name__)


def flush_policy(
    config: Config, claims: Sequence[Claim], specs: Sequence[TrainSpec]
) -> FlushPolicy:
    """The worker's flush pace, and every rung the claims' early-stopping rules read.

    Jobs that refill a stack come from the same sweep: the same rule, the same rungs.
    """
    rungs = frozenset[int]().union(
        *(
            flush_steps(claim.early_stop, spec.iterations)
            for claim, spec in zip(claims, specs, strict=True)
        )
    )
    return FlushPolicy(config.flush_every, config.flush_seconds, rungs)


def train_alone(
    config: Config, claim: Claim, spec: TrainSpec, device: torch.device, record: TrainingRecord
) -> Outcome:
    """One job in its stage's own training function, resumed from its checkpoint."""
    initial = None
    if claim.resume_blob is not None:
        log.info("job %s resumes from its checkpoint at step %d", claim.job_id, claim.resume_step)
        initial = Snapshot(claim.resume_step, claim.resume_blob, claim.resume_layout or {})

    def record_chunk(first_step: int, losses: list[float]) -> bool:
        return claim.job_id not in record.record_chunks([(claim, first_step, losses)])

    def save_checkpoint(step: int, blob: bytes, layout: dict) -> None:
        record.save_checkpoints([(claim, step, blob, layout)])

    buffer = LossBuffer(
        spec.iterations,
        device,
        record_chunk,
        flush_policy(config, [claim], [spec]),
        start_step=claim.resume_step,
        checkpointer=Checkpointer(
            save_checkpoint,
            every=config.checkpoint_every,
            seconds=config.checkpoint_seconds,
            initial=initial,
        ),
        should_yield=shutdown.requested,
    )
    train(spec, device, buffer)
    return buffer.outcome()


def train_stack(
    config: Config,
    specs: list[TrainSpec],
    device: torch.device,
    record: TrainingRecord,
    refiller: Refiller | None = None,
) -> list[Outcome]:
    """Jobs as one fused stack, every row checkpointed, resumed from their checkpoints,
    the rows jobs leave refilled where a refiller is given."""
    claims = record.claims  # grows as the stack refills: job index k is claims[k]
    resume = None
    if claims[0].resume_blob is not None:
        log.info(
            "jobs %s resume fused at step %d", [c.job_id for c in claims], claims[0].resume_step
        )
        resume = [
            Snapshot(claim.resume_step, claim.resume_blob or b"", claim.resume_layout or {})
            for claim in claims
        ]

    def record_chunks(chunks: list[tuple[int, int, list[float]]]) -> list[int]:
        stopping = record.record_chunks([(claims[k], first, losses) for k, first, losses in chunks])
        return [k for k, claim in enumerate(claims) if claim.job_id in stopping]

    def save_checkpoints(rows: list[tuple[int, int, bytes, dict]]) -> None:
        record.save_checkpoints([(claims[k], step, blob, layout) for k, step, blob, layout in rows])

    return train_fused(
        specs,
        device,
        record_chunks,
        flush_policy(config, claims, specs),
        checkpointer=StackCheckpointer(
            save_checkpoints, every=config.checkpoint_every, seconds=config.checkpoint_seconds
        ),
        resume=resume,
        should_yield=shutdown.requested,
        refill=refiller,
    )
