"""Run a batch of compatible jobs fused: claim, train stacked, record each job's own outcome."""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
import torch

from service.config import Config
from service.db import session_scope
from service.jobs import job_spec
from service.models import Job, JobStatus
from service.sweeps.batching import batch_key
from worker import device_errors
from worker.heartbeat import Heartbeat
from worker.recording import Claim, claim_stack, finish_job, mark_started_on, record_chunks
from worker.runner import describe_device, resolve_device
from worker.state import heartbeat, session_factory, worker_config
from worker.training import TrainSpec
from worker.training.batch_size import fused_batch_size
from worker.training.fused import FusedOutcome, train_fused

log = logging.getLogger(__name__)


def run_batch(job_ids: list[int], worker_name: str) -> dict[int, str]:
    """Train the jobs in fused stacks sized for this device; each job's status (or why skipped)."""
    factory = session_factory()
    with factory() as session:
        jobs = session.scalars(sa.select(Job).where(Job.id.in_(job_ids)).order_by(Job.id)).all()
        fields = {job.id: (job_spec(job), job.queue) for job in jobs}
    results = {job_id: "missing" for job_id in job_ids if job_id not in fields}
    groups: dict[tuple, list[int]] = defaultdict(list)
    for job_id, (spec_fields, queue) in fields.items():
        try:
            TrainSpec.from_fields(spec_fields)  # refuses a spec no stage can train
            key = batch_key(spec_fields, queue)
        except ValueError:
            key = ("unfusable", job_id)  # fails alone, when claimed, with its own error
        groups[key].append(job_id)
    for members in groups.values():
        spec_fields, queue = fields[members[0]]
        size = len(members)
        # On a bad spec or a missing device _run_stack records the error against each job.
        with contextlib.suppress(ValueError, RuntimeError):
            size = fused_batch_size(
                TrainSpec.from_fields(spec_fields), resolve_device(spec_fields["device"], queue)
            )
        for start in range(0, len(members), size):
            stack = members[start : start + size]
            results.update(_run_stack(factory, stack, fields, worker_name))
    return results


def _run_stack(
    factory: so.sessionmaker[so.Session],
    job_ids: list[int],
    fields: dict[int, tuple[dict, str]],
    worker_name: str,
) -> dict[int, str]:
    """Claim the jobs in one transaction, train those claimed as one stack, finish each."""
    config = worker_config()
    results: dict[int, str] = {}
    with session_scope(factory) as session:
        claims, refused = claim_stack(
            session, job_ids, worker_name, config.lease_seconds, config.max_attempts
        )
    for job_id, state in refused.items():
        log.info("job %s not run: %s", job_id, state)
    results.update(refused)
    if not claims:
        return results
    beat = heartbeat()
    with beat.holding(claims):
        results.update(_train_stack(factory, claims, fields, config, beat))
    return results


def _train_stack(
    factory: so.sessionmaker[so.Session],
    claims: list[Claim],
    fields: dict[int, tuple[dict, str]],
    config: Config,
    beat: Heartbeat,
) -> dict[int, str]:
    """Train claimed jobs as one stack, then finish each that this worker still holds."""
    results: dict[int, str] = {}
    spec_fields, queue = fields[claims[0].job_id]
    ran_on = None
    broke: Exception | None = None
    try:
        specs = [TrainSpec.from_fields(fields[c.job_id][0]) for c in claims]
        device = resolve_device(spec_fields["device"], queue)
        ran_on = describe_device(device)
        with session_scope(factory) as session:
            for claim in claims:
                mark_started_on(session, claim, ran_on, torch.__version__)

        def write_chunks(first_step: int, chunks: list[tuple[int, list[float]]]) -> list[int]:
            # One transaction for every job's chunk of this flush.
            with session_scope(factory) as session:
                # A fenced attempt writes not one more loss (see Heartbeat.lost).
                pairs = [(claims[k], losses) for k, losses in chunks if not beat.lost(claims[k])]
                stop = record_chunks(session, pairs, first_step, config.lease_seconds)
            return [k for k, claim in enumerate(claims) if claim in stop or beat.lost(claim)]

        outcomes = train_fused(
            specs,
            device,
            write_chunks,
            flush_every=config.flush_every,
            flush_seconds=config.flush_seconds,
        )
    except Exception as error:
        log.exception("fused batch %s failed", [c.job_id for c in claims])
        broke = error
        message = f"{type(error).__name__}: {error}"[:4000]
        outcomes = [FusedOutcome() for _ in claims]
        statuses: list[tuple[JobStatus, dict[str, Any]]]
        statuses = [(JobStatus.FAILED, {"error": message})] * len(claims)
    else:
        statuses = [_status(outcome) for outcome in outcomes]
    with session_scope(factory) as session:
        for claim, (status, outcome) in zip(claims, statuses, strict=True):
            if beat.lost(claim):
                log.warning("job %s: attempt %d lost its lease", claim.job_id, claim.attempt)
                results[claim.job_id] = "lost"
                continue
            written = finish_job(
                session, claim, status, ran_on=ran_on, torch_version=torch.__version__, **outcome
            )
            results[claim.job_id] = str(status) if written else "superseded"
    device_errors.exit_if_device_broken(broke)
    return results


def _status(outcome: FusedOutcome) -> tuple[JobStatus, dict[str, Any]]:
    if outcome.diverged_at is not None:
        return JobStatus.DIVERGED, {"diverged_at": outcome.diverged_at}
    if outcome.stopped:
        return JobStatus.CANCELLED, {}
    return JobStatus.SUCCEEDED, {}
