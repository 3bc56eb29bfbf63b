"""Run a message's jobs, alone or as fused stacks, under one contract: claim, lease, record,
limit, finish.

A single job is the stack of one: it trains in its stage's own function; jobs of a batch
message train fused (a stack of one too, when that is all there is). Both go through the same
claim (attempt cap), database retries, fencing by the heartbeat, soft limit per job, hard limit
per stack, checkpoints, hand-back on shutdown and terminal write.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict

import torch
from celery import Celery

from service.dispatch.send import send_again
from worker import device_errors
from worker.attempts.claims import Claim, claim_stack
from worker.attempts.devices import describe_device, resolve_device
from worker.attempts.drivers import train_alone, train_stack
from worker.attempts.outcomes import write_outcomes
from worker.attempts.planning import QueuedJob, Stack, plan_stacks, read_jobs
from worker.attempts.record import mark_started_on
from worker.attempts.refill import Refiller
from worker.attempts.run import Run, crash_if_told
from worker.attempts.training_record import TrainingRecord, announce
from worker.training import TrainSpec
from worker.training.checkpoints import is_stacked
from worker.training.outcome import Outcome
from worker.watchdog import StackLimits

log = logging.getLogger(__name__)


def run_job(job_id: int, worker_name: str, app: Celery) -> str:
    """Train one job end to end; the status it ended in (or why it was not run)."""
    return run_jobs([job_id], worker_name, app, fused=False)[job_id]


def run_batch(job_ids: list[int], worker_name: str, app: Celery) -> dict[int, str]:
    """Train compatible jobs fused, in stacks sized for this device; each job's status."""
    return run_jobs(job_ids, worker_name, app, fused=True)


def run_jobs(job_ids: list[int], worker_name: str, app: Celery, *, fused: bool) -> dict[int, str]:
    """Plan the jobs into stacks and run each in turn; each job's status (or why skipped).

    `app` is the task's own Celery app: handed-back jobs are sent again through it.
    """
    run = Run(worker_name, app)
    queued = run.transaction(read_jobs, job_ids)
    results = {job_id: "missing" for job_id in job_ids if job_id not in queued}
    for stack in plan_stacks(queued, fused=fused, max_stack=run.config.max_stack):
        results.update(_run_stack(run, stack, queued))
    return results


def _run_stack(run: Run, stack: Stack, queued: dict[int, QueuedJob]) -> dict[int, str]:
    """Claim the stack's jobs in one transaction, train those claimed, finish each."""
    config = run.config
    claims, refused = run.transaction(
        claim_stack, stack.job_ids, run.worker, config.lease_seconds, config.max_attempts
    )
    for job_id, state in refused.items():
        log.info("job %s not run: %s", job_id, state)
    results: dict[int, str] = dict(refused)
    for claim in claims:
        crash_if_told(queued[claim.job_id].fields.get("name"))
    # Claims resume from their own checkpoints: a stack trains from one step, in one way.
    groups: dict[tuple[int, bool], list[Claim]] = defaultdict(list)
    for claim in claims:
        resumes_fused = (
            is_stacked(claim.resume_layout) if claim.resume_blob is not None else stack.fused
        )
        groups[(claim.resume_step, resumes_fused)].append(claim)
    with run.beat.holding(claims):
        for (_, fused), members in groups.items():
            trainings = [members] if fused else [[claim] for claim in members]
            for group in trainings:
                # The hard limit is each job's, from its own start, not the message's.
                hard = config.job_hard_limit_seconds
                with StackLimits(hard, always=stack.fused) as limits:
                    limits.start([claim.job_id for claim in group])
                    refills = stack.refills and fused
                    results.update(
                        _train_claims(
                            run, group, queued, fused=fused, refills=refills, limits=limits
                        )
                    )
    return results


def _train_claims(
    run: Run,
    claims: list[Claim],
    queued: dict[int, QueuedJob],
    *,
    fused: bool,
    refills: bool = False,
    limits: StackLimits | None = None,
) -> dict[int, str]:
    """Train claimed jobs (fused, or one in its stage) and write each one's outcome."""
    first = queued[claims[0].job_id]
    record = TrainingRecord(run, claims)
    refiller = None
    if refills and limits is not None and run.config.refill_stacks:
        refiller = Refiller.of(run, record, limits, first)
    ran_on = None
    error: Exception | None = None
    try:
        for claim in claims:
            device_errors.simulate_if_told(queued[claim.job_id].fields.get("name"))
        specs = [TrainSpec.from_fields(queued[claim.job_id].fields) for claim in claims]
        device = resolve_device(first.fields["device"], first.queue)
        ran_on = describe_device(device)
        run.transaction(mark_started_on, claims, ran_on, torch.__version__)
        if fused:
            with contextlib.ExitStack() as holding:
                if refiller is not None:
                    refiller.ran_on, refiller.holding = ran_on, holding
                outcomes = train_stack(run.config, specs, device, record, refiller)
        else:
            outcomes = [train_alone(run.config, claims[0], specs[0], device, record)]
    except Exception as raised:
        error = raised
        log.exception("jobs %s failed", [claim.job_id for claim in claims])
        outcomes = [Outcome() for _ in record.claims]
    claims = record.claims
    results = run.transaction(write_outcomes, run.beat, claims, outcomes, error, ran_on)
    announce(run.config, claims)
    handed = [claim.job_id for claim in claims if results[claim.job_id] == "handed back"]
    if handed:
        _send_again(run, handed, first.queue)
    device_errors.exit_if_device_broken(error)
    return results


def _send_again(run: Run, job_ids: list[int], queue: str) -> None:
    """Queue handed-back jobs' messages for the next worker (the reconciler's if this fails):
    through the one send path, on the task's own app, fused sweeps' jobs in batches."""
    try:
        send_again(run.app, run.factory, [(job_id, queue) for job_id in job_ids])
    except Exception:
        log.exception("could not send jobs %s again; the reconciler will", job_ids)
    else:
        log.info("handed jobs %s back to the queue", job_ids)
