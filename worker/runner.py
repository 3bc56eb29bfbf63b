"""Run jobs, alone or as fused stacks, under one contract: claim, lease, record, limit, finish.

A single job is the stack of one: it trains in its stage's own function; jobs of a batch
message train fused (a stack of one too, when that is all there is). Both go through the same
claim (attempt cap), database retries, fencing by the heartbeat, soft limit per job, hard limit
per stack, checkpoints, hand-back on shutdown and terminal write.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so
import torch

from service import job_states
from service.config import Config
from service.db import session_scope
from service.dispatch.fusing import batch_key
from service.jobs import job_spec
from service.models import Checkpoint, Job, JobStatus
from service.sweeps import wakeup
from service.sweeps.early_stop import flush_steps
from worker import device_errors, shutdown
from worker.heartbeat import Heartbeat
from worker.recording import (
    Claim,
    claim_stack,
    finish_job,
    hand_back,
    mark_started_on,
    median_reads,
    record_chunks,
    refill_claims,
    save_checkpoints,
)
from worker.state import heartbeat, reader_factory, session_factory, worker_config
from worker.training import LossRecorder, TrainSpec, train
from worker.training.batch_size import MAX_FUSED, fused_batch_size
from worker.training.checkpoints import Checkpointer, Snapshot, StackCheckpointer, is_stacked
from worker.training.fused import FusedOutcome, train_fused
from worker.watchdog import StackLimits

log = logging.getLogger(__name__)
T = TypeVar("T")


def with_db_retries(config: Config, action: Callable[[], T]) -> T:
    """Run a database action, retrying with backoff while the database is unreachable."""
    deadline = time.monotonic() + config.db_retry_seconds
    delay = 0.1
    while True:
        try:
            return action()
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
            # A restarting server, a dropped connection or a busy SQLite file: all pass.
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable, retrying in %.1f s: %s", delay, error)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def crash_if_told(job_name: str | None) -> None:
    """Test hook: a job with the configured name kills its own worker process, every time."""
    if os.environ.get("TRAINQ_TESTING") != "1":
        return
    poison = os.environ.get("TRAINQ_TEST_CRASH_ON_JOB_NAME")
    if poison and job_name == poison:
        os.kill(os.getpid(), signal.SIGKILL)


def resolve_device(requested: str, queue: str) -> torch.device:
    """The device a job runs on: its own request, else what its queue stands for."""
    if requested == "cuda" or (requested == "auto" and queue == "gpu"):
        if not torch.cuda.is_available():
            raise RuntimeError("the job asks for CUDA and this worker has none")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A device as a job records it, e.g. 'cpu' or 'cuda:0 NVIDIA H100'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return device.type


@dataclass(frozen=True)
class QueuedJob:
    """What planning needs of a job: its spec, queue, attempts so far and checkpoint."""

    fields: dict[str, Any]
    queue: str
    attempts: int
    resume_step: int
    # How its checkpoint resumes: "fused", "stage", or None without one.
    resumes: str | None


@dataclass(frozen=True)
class Stack:
    """Jobs to train together: fused (one or more), or one alone in its stage."""

    job_ids: list[int]
    fused: bool
    # Whether rows its jobs leave take queued jobs of their sweep (not for a job kept alone).
    refills: bool = False


class Run:
    """One message's run: this worker, its configuration, database and heartbeat."""

    def __init__(self, worker_name: str) -> None:
        self.worker = worker_name
        self.config = worker_config()
        self.factory = session_factory()
        self.readers = reader_factory()
        self.beat: Heartbeat = heartbeat()

    def transaction(self, action: Callable[..., T], *args: Any) -> T:
        """Run action(session, *args) in one transaction, retried while the database is away."""
        return self._in(self.factory, action, *args)

    def read(self, action: Callable[..., T], *args: Any) -> T:
        """`transaction` for an action that only reads."""
        return self._in(self.readers, action, *args)

    def _in(self, factory: so.sessionmaker[so.Session], action: Callable[..., T], *args: Any) -> T:
        def attempt() -> T:
            with session_scope(factory) as session:
                return action(session, *args)

        return with_db_retries(self.config, attempt)


def run_job(job_id: int, worker_name: str) -> str:
    """Train one job end to end; the status it ended in (or why it was not run)."""
    return run_jobs([job_id], worker_name, fused=False)[job_id]


def run_batch(job_ids: list[int], worker_name: str) -> dict[int, str]:
    """Train compatible jobs fused, in stacks sized for this device; each job's status."""
    return run_jobs(job_ids, worker_name, fused=True)


def run_jobs(job_ids: list[int], worker_name: str, *, fused: bool) -> dict[int, str]:
    """Plan the jobs into stacks and run each in turn; each job's status (or why skipped)."""
    run = Run(worker_name)
    queued = run.transaction(read_jobs, job_ids)
    results = {job_id: "missing" for job_id in job_ids if job_id not in queued}
    for stack in plan_stacks(queued, fused=fused, max_stack=run.config.max_stack):
        results.update(_run_stack(run, stack, queued))
    return results


def read_jobs(session: so.Session, job_ids: Sequence[int]) -> dict[int, QueuedJob]:
    """The planning facts of each job that exists."""
    jobs = session.scalars(sa.select(Job).where(Job.id.in_(job_ids)).order_by(Job.id)).all()
    checkpoints = {
        row.job_id: (row.step, row.layout)
        for row in session.execute(
            sa.select(Checkpoint.job_id, Checkpoint.step, Checkpoint.layout).where(
                Checkpoint.job_id.in_(job_ids)
            )
        )
    }
    queued = {}
    for job in jobs:
        step, layout = checkpoints.get(job.id, (0, None))
        resumes = None if layout is None else ("fused" if is_stacked(layout) else "stage")
        queued[job.id] = QueuedJob(job_spec(job), job.queue, job.attempts, step, resumes)
    return queued


def plan_stacks(
    queued: dict[int, QueuedJob], *, fused: bool, max_stack: int = MAX_FUSED
) -> list[Stack]:
    """The stacks to train, in order.

    A job resumes the way its checkpoint was written (fused rows fused, a stage's alone). In a
    batch, jobs that share a fusion key and a resume step stack, up to the device's size; a
    job already retried (its stack died twice) trains alone, last, so a job that kills its
    worker takes no stack-mate's attempts with it.
    """
    if not fused:
        return [Stack([job_id], fused=job.resumes == "fused") for job_id, job in queued.items()]
    groups: dict[tuple, list[int]] = defaultdict(list)
    alone: list[Stack] = []
    for job_id, job in queued.items():
        if job.resumes == "stage":
            alone.append(Stack([job_id], fused=False))
            continue
        if job.attempts >= 2:
            alone.append(Stack([job_id], fused=True))
            continue
        try:
            TrainSpec.from_fields(job.fields)  # refuses a spec no stage can train
            key = (*batch_key(job.fields, job.queue), job.resume_step)
        except ValueError:
            key = ("unfusable", job_id)  # fails alone, when claimed, with its own error
        groups[key].append(job_id)
    stacks: list[Stack] = []
    for members in groups.values():
        first = queued[members[0]]
        size = len(members)
        # On a bad spec or a missing device training records the error against each job.
        with contextlib.suppress(ValueError, RuntimeError):
            size = fused_batch_size(
                TrainSpec.from_fields(first.fields),
                resolve_device(first.fields["device"], first.queue),
                cap=max_stack,
            )
        stacks.extend(
            Stack(members[start : start + size], fused=True, refills=True)
            for start in range(0, len(members), size)
        )
    return stacks + alone


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
                        _train(run, group, queued, fused=fused, refills=refills, limits=limits)
                    )
    return results


class Recording:
    """The claims of one training as they write: fenced, within their soft limit, retried."""

    def __init__(self, run: Run, claims: list[Claim]) -> None:
        self.run = run
        self.claims: list[Claim] = []
        self.soft_limit = run.config.job_soft_limit_seconds
        # Each job's, from its own start. Checked between chunks: Celery's own soft limit
        # raises anywhere, mid-commit too.
        self.deadlines: dict[int, float] = {}
        self.add(claims)

    def add(self, claims: list[Claim]) -> None:
        """Record these claims too (jobs that joined a refilled stack), their limit from now."""
        self.claims.extend(claims)
        if self.soft_limit > 0:
            start = time.monotonic()
            self.deadlines.update({claim.job_id: start + self.soft_limit for claim in claims})

    def write(self, chunks: list[tuple[Claim, int, list[float]]]) -> set[int]:
        """Store one flush's chunks (claim, first step, losses) in one transaction; the job
        ids that must stop."""
        beat = self.run.beat
        # A fenced attempt writes not one more loss (see Heartbeat.lost).
        live = [chunk for chunk in chunks if not beat.lost(chunk[0])]
        stopping = {claim.job_id for claim, _, _ in chunks if beat.lost(claim)}
        if live:
            summaries = [claim.summary() for claim, _, _ in live]
            try:
                ended = self.run.read(median_reads, live)
                stop = self.run.transaction(
                    record_chunks, live, self.run.config.lease_seconds, ended
                )
            except BaseException:
                # Rolled back: the claims must not count those rows.
                for (claim, _, _), summary in zip(live, summaries, strict=True):
                    claim.restore(summary)
                raise
            stopping |= {claim.job_id for claim in stop}
            _announce(self.run.config, stop)
        now = time.monotonic()
        for claim, _, _ in chunks:
            deadline = self.deadlines.get(claim.job_id)
            if deadline is not None and now > deadline and claim.job_id not in stopping:
                claim.failure = (
                    f"soft time limit exceeded: the job ran longer than {self.soft_limit:g} s"
                )
                stopping.add(claim.job_id)
        return stopping

    def save(self, states: list[tuple[Claim, int, bytes, dict]]) -> None:
        """Store the jobs' checkpoints, each at its step, in one transaction."""
        self.run.transaction(save_checkpoints, states)


def _train(
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
    recording = Recording(run, claims)
    refiller = None
    if refills and limits is not None and run.config.refill_stacks:
        refiller = Refiller.of(run, recording, limits, first)
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
                outcomes = _train_stack(run.config, specs, device, recording, refiller)
        else:
            outcomes = [_train_alone(run.config, claims[0], specs[0], device, recording)]
    except Exception as raised:
        error = raised
        log.exception("jobs %s failed", [claim.job_id for claim in claims])
        outcomes = [FusedOutcome() for _ in recording.claims]
    claims = recording.claims
    results = run.transaction(_write_outcomes, run.beat, claims, outcomes, error, ran_on)
    _announce(run.config, claims)
    handed = [claim.job_id for claim in claims if results[claim.job_id] == "handed back"]
    if handed:
        _send_again(handed, first.queue, fused=fused)
    device_errors.exit_if_device_broken(error)
    return results


def _train_alone(
    config: Config, claim: Claim, spec: TrainSpec, device: torch.device, recording: Recording
) -> FusedOutcome:
    """One job in its stage's own training function, resumed from its checkpoint."""
    initial = None
    if claim.resume_blob is not None:
        log.info("job %s resumes from its checkpoint at step %d", claim.job_id, claim.resume_step)
        initial = Snapshot(claim.resume_step, claim.resume_blob, claim.resume_layout or {})

    def write_chunk(first_step: int, losses: list[float]) -> bool:
        return claim.job_id not in recording.write([(claim, first_step, losses)])

    def write_checkpoint(step: int, blob: bytes, layout: dict) -> None:
        recording.save([(claim, step, blob, layout)])

    recorder = LossRecorder(
        spec.iterations,
        device,
        write_chunk,
        flush_every=config.flush_every,
        flush_seconds=config.flush_seconds,
        start_step=claim.resume_step,
        checkpointer=Checkpointer(
            write_checkpoint,
            every=config.checkpoint_every,
            seconds=config.checkpoint_seconds,
            initial=initial,
        ),
        should_yield=shutdown.requested,
        flush_after=flush_steps(claim.early_stop, spec.iterations),
    )
    train(spec, device, recorder)
    return FusedOutcome(
        diverged_at=recorder.diverged_at, stopped=recorder.stopped, yielded=recorder.yielded
    )


def _train_stack(
    config: Config,
    specs: list[TrainSpec],
    device: torch.device,
    recording: Recording,
    refiller: Refiller | None = None,
) -> list[FusedOutcome]:
    """Jobs as one fused stack, every row checkpointed, resumed from their checkpoints,
    the rows jobs leave refilled where a refiller is given."""
    claims = recording.claims  # grows as the stack refills: job index k is claims[k]
    resume = None
    if claims[0].resume_blob is not None:
        log.info(
            "jobs %s resume fused at step %d", [c.job_id for c in claims], claims[0].resume_step
        )
        resume = [
            Snapshot(claim.resume_step, claim.resume_blob or b"", claim.resume_layout or {})
            for claim in claims
        ]

    def write_chunks(chunks: list[tuple[int, int, list[float]]]) -> list[int]:
        stopping = recording.write([(claims[k], first, losses) for k, first, losses in chunks])
        return [k for k, claim in enumerate(claims) if claim.job_id in stopping]

    def write_checkpoints(rows: list[tuple[int, int, bytes, dict]]) -> None:
        recording.save([(claims[k], step, blob, layout) for k, step, blob, layout in rows])

    return train_fused(
        specs,
        device,
        write_chunks,
        flush_every=config.flush_every,
        flush_seconds=config.flush_seconds,
        checkpointer=StackCheckpointer(
            write_checkpoints, every=config.checkpoint_every, seconds=config.checkpoint_seconds
        ),
        resume=resume,
        should_yield=shutdown.requested,
        refill=refiller,
        # Jobs that refill the stack come from the same sweep: the same rule, the same rungs.
        flush_after=set().union(
            *(
                flush_steps(claim.early_stop, spec.iterations)
                for claim, spec in zip(claims, specs, strict=True)
            )
        ),
    )


class Refiller:
    """Fills the rows jobs left in a fused stack with queued jobs of the same sweep.

    A pruned, cancelled, diverged or finished job frees its row at a flush; the next queued
    job of its sweep that fuses with the stack takes it there, claimed like any job (lease,
    attempt, heartbeat, its own soft and hard limits) and trained from step 0 beside the
    others. A stack stops refilling when half its message's time limit is spent, so Celery's
    limit on the message (the hard limit x its job count) never cuts a healthy stack.
    """

    def __init__(
        self, run: Run, recording: Recording, limits: StackLimits, sweep_id: int, key: tuple
    ) -> None:
        self.run, self.recording, self.limits = run, recording, limits
        self.sweep_id, self.key = sweep_id, key
        hard = run.config.job_hard_limit_seconds
        budget = hard * len(recording.claims) / 2 if hard > 0 else float("inf")
        self.until = time.monotonic() + budget
        self.ran_on = ""
        self.holding: contextlib.ExitStack | None = None

    @classmethod
    def of(
        cls, run: Run, recording: Recording, limits: StackLimits, first: QueuedJob
    ) -> Refiller | None:
        """A refiller for a stack whose jobs all belong to one sweep (None otherwise)."""
        sweeps = {claim.sweep_id for claim in recording.claims}
        sweep_id = sweeps.pop() if len(sweeps) == 1 else None
        if sweep_id is None:
            return None
        return cls(run, recording, limits, sweep_id, batch_key(first.fields, first.queue))

    def __call__(self, running: list[int], free: int) -> list[TrainSpec]:
        """Claims for up to `free` rows; the specs they train (job indices follow on)."""
        claims = self.recording.claims
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
        self.recording.add(joining)
        self.run.transaction(mark_started_on, joining, self.ran_on, torch.__version__)
        return [TrainSpec.from_fields(fields) for _, fields in taken]


def _announce(config: Config, ended: Iterable[Claim]) -> None:
    """Wake the search controllers of the sweeps whose trials just ended (after the commit)."""
    sweeps = [claim.sweep_id for claim in ended if claim.searched and claim.sweep_id is not None]
    if sweeps:
        wakeup.announce(config.broker_url, sweeps)


def _write_outcomes(
    session: so.Session,
    beat: Heartbeat,
    claims: list[Claim],
    outcomes: list[FusedOutcome],
    error: Exception | None,
    ran_on: str | None,
) -> dict[int, str]:
    """Each job's one terminal state (or its hand-back), where its attempt still holds it."""
    results = {}
    for claim, outcome in zip(claims, outcomes, strict=True):
        job = session.get(Job, claim.job_id, populate_existing=True)
        if job_states.owns(job, claim) and job.is_terminal:
            # Ended while it trained, by its sweep's early stopping or a hard limit: said there.
            results[claim.job_id] = str(job.status)
            continue
        if beat.lost(claim):
            # Another attempt owns the job, or may by now: its outcome is not this one's.
            log.warning(
                "job %s: attempt %d lost its lease and stopped", claim.job_id, claim.attempt
            )
            results[claim.job_id] = "lost"
            continue
        if outcome.yielded and error is None and claim.failure is None:
            written = hand_back(session, claim)
            results[claim.job_id] = "handed back" if written else "superseded"
            continue
        status, details = _status(claim, outcome, error)
        written = finish_job(
            session, claim, status, ran_on=ran_on, torch_version=torch.__version__, **details
        )
        results[claim.job_id] = str(status) if written else "superseded"
    return results


def _status(
    claim: Claim, outcome: FusedOutcome, error: Exception | None
) -> tuple[JobStatus, dict[str, Any]]:
    """The terminal state a training outcome stands for, with what the job records of it."""
    if error is not None:
        return JobStatus.FAILED, {"error": f"{type(error).__name__}: {error}"[:4000]}
    if claim.failure is not None:
        return JobStatus.FAILED, {"error": claim.failure}
    if outcome.diverged_at is not None:
        return JobStatus.DIVERGED, {"diverged_at": outcome.diverged_at}
    if outcome.stopped:
        return JobStatus.CANCELLED, {}
    return JobStatus.SUCCEEDED, {}


def _send_again(job_ids: list[int], queue: str, *, fused: bool) -> None:
    """Queue handed-back jobs' messages for the next worker (the reconciler's if this fails)."""
    from service.broker import enqueue_batches, enqueue_jobs
    from worker.celery_app import app

    try:
        if fused:
            enqueue_batches(app, [(queue, job_ids)])
        else:
            enqueue_jobs(app, [(job_id, queue) for job_id in job_ids])
    except Exception:
        log.exception("could not send jobs %s again; the reconciler will", job_ids)
    else:
        log.info("handed jobs %s back to the queue", job_ids)
