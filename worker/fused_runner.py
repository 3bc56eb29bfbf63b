"""Run a batch of compatible jobs fused: claim, train stacked, record each job's own outcome."""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict

import sqlalchemy as sa
import sqlalchemy.orm as so
import torch

from service.db import session_scope
from service.jobs import job_spec
from service.models import Job, JobStatus
from service.sweeps.batching import batch_key
from worker.fused_recording import record_chunks
from worker.recording import Claim, claim_job, finish_job, mark_started_on
from worker.runner import describe_device, resolve_device
from worker.state import session_factory, worker_config
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
    claims: list[Claim] = []
    with session_scope(factory) as session:
        for job_id in job_ids:
            claim, state = claim_job(session, job_id, worker_name, config.lease_seconds)
            if claim is None:
                log.info("job %s not run: %s", job_id, state)
                results[job_id] = state
            else:
                claims.append(claim)
    if not claims:
        return results
    spec_fields, queue = fields[claims[0].job_id]
    ran_on = None
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
                stop = record_chunks(
                    session, [(claims[k], losses) for k, losses in chunks], first_step,
                    config.lease_seconds,
                )  # fmt: skip
            return [k for k, claim in enumerate(claims) if claim in stop]

        outcomes = train_fused(
            specs,
            device,
            write_chunks,
            flush_every=config.flush_every,
            flush_seconds=config.flush_seconds,
        )
    except Exception as error:
        log.exception("fused batch %s failed", [c.job_id for c in claims])
        message = f"{type(error).__name__}: {error}"[:4000]
        outcomes = [FusedOutcome() for _ in claims]
        statuses = [(JobStatus.FAILED, {"error": message})] * len(claims)
    else:
        statuses = [_status(outcome) for outcome in outcomes]
    with session_scope(factory) as session:
        for claim, (status, outcome) in zip(claims, statuses, strict=True):
            written = finish_job(
                session, claim, status, ran_on=ran_on, torch_version=torch.__version__, **outcome
            )
            results[claim.job_id] = str(status) if written else "superseded"
    return results


def _status(outcome: FusedOutcome) -> tuple[str, dict]:
    if outcome.diverged_at is not None:
        return JobStatus.DIVERGED, {"diverged_at": outcome.diverged_at}
    if outcome.stopped:
        return JobStatus.CANCELLED, {}
    return JobStatus.SUCCEEDED, {}
