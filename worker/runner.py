"""Run one job: claim it, train it with its losses streamed to the database, record the outcome."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy.exc
import sqlalchemy.orm as so
import torch

from service.config import Config
from service.db import session_scope
from service.jobs import job_spec
from service.models import Job, JobStatus
from worker import device_errors
from worker.heartbeat import Heartbeat
from worker.recording import (
    Claim,
    claim_job,
    finish_job,
    mark_started_on,
    record_chunk,
    save_checkpoint,
)
from worker.state import heartbeat, session_factory, worker_config
from worker.training import LossRecorder, TrainSpec, train
from worker.training.checkpoints import Checkpointer, Snapshot

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


def run_job(job_id: int, worker_name: str) -> str:
    """Train one job end to end and return the status it ended in (or why it was skipped)."""
    config = worker_config()
    factory = session_factory()

    def in_transaction(action: Callable[..., T], *args: object) -> T:
        def attempt() -> T:
            with session_scope(factory) as session:
                return action(session, *args)

        return with_db_retries(config, attempt)

    def claim_and_read(
        session: so.Session,
    ) -> tuple[Claim | None, str, dict[str, Any] | None, str, Job | None]:
        claim, state = claim_job(
            session, job_id, worker_name, config.lease_seconds, config.max_attempts
        )
        job = session.get(Job, job_id) if claim else None
        return claim, state, job_spec(job) if job else None, job.queue if job else "cpu", job

    claim, state, fields, queue, job = in_transaction(claim_and_read)
    if claim is None or fields is None or job is None:
        log.info("job %s not run: %s", job_id, state)
        return state
    crash_if_told(job.name)
    beat = heartbeat()
    with beat.holding([claim]):
        return _train_claimed(claim, fields, queue, config, in_transaction, beat)


def _train_claimed(
    claim: Claim,
    fields: dict[str, Any],
    queue: str,
    config: Config,
    in_transaction: Callable[..., Any],
    beat: Heartbeat,
) -> str:
    """Train a claimed job with its losses streamed to the database; record its outcome."""
    job_id = claim.job_id
    # The soft time limit is checked here, between chunks: Celery's own raises at any point,
    # in the middle of a database commit too, and leaves the connection and record unsure.
    soft_limit = config.job_soft_limit_seconds
    deadline = time.monotonic() + soft_limit if soft_limit > 0 else None

    def write_chunk(first_step: int, losses: list[float]) -> bool:
        if beat.lost(claim):
            return False  # fenced: not one more loss from an attempt that may not own the job
        summary = claim.summary()
        try:
            keep_going = in_transaction(
                record_chunk, claim, first_step, losses, config.lease_seconds
            )
        except BaseException:
            # Rolled back: the claim must not count those rows.
            claim.restore(summary)
            raise
        if deadline is not None and time.monotonic() > deadline:
            claim.failure = f"soft time limit exceeded: the job ran longer than {soft_limit:g} s"
            return False
        return keep_going

    def write_checkpoint(step: int, blob: bytes, layout: dict) -> None:
        in_transaction(save_checkpoint, claim, step, blob, layout)

    ran_on = None
    try:
        device_errors.simulate_if_told(fields.get("name"))
        spec = TrainSpec.from_fields(fields)
        device = resolve_device(fields["device"], queue)
        ran_on = describe_device(device)
        in_transaction(mark_started_on, claim, ran_on, torch.__version__)
        initial = None
        if claim.resume_blob is not None:
            log.info("job %s resumes from its checkpoint at step %d", job_id, claim.resume_step)
            initial = Snapshot(claim.resume_step, claim.resume_blob, claim.resume_layout or {})
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
        )
        train(spec, device, recorder)
    except Exception as error:
        if beat.lost(claim):
            return _lost(claim)
        log.exception("job %s failed", job_id)
        status = _finish(in_transaction, claim, JobStatus.FAILED, ran_on, error=_describe(error))
        device_errors.exit_if_device_broken(error)
        return status
    if beat.lost(claim):
        return _lost(claim)
    if claim.failure is not None:
        return _finish(in_transaction, claim, JobStatus.FAILED, ran_on, error=claim.failure)
    if recorder.diverged_at is not None:
        return _finish(
            in_transaction, claim, JobStatus.DIVERGED, ran_on, diverged_at=recorder.diverged_at
        )
    if recorder.stopped:
        return _finish(in_transaction, claim, JobStatus.CANCELLED, ran_on)
    return _finish(in_transaction, claim, JobStatus.SUCCEEDED, ran_on)


def _lost(claim: Claim) -> str:
    """Another attempt owns the job, or may by now: its outcome is not this attempt's to write."""
    log.warning("job %s: attempt %d lost its lease and stopped", claim.job_id, claim.attempt)
    return "lost"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:4000]


def _finish(
    in_transaction: Callable[[Callable[[so.Session], bool]], bool],
    claim: Claim,
    status: str,
    ran_on: str | None,
    **outcome: Any,
) -> str:
    def write(session: so.Session) -> bool:
        return finish_job(
            session, claim, status, ran_on=ran_on, torch_version=torch.__version__, **outcome
        )

    return str(status) if in_transaction(write) else "superseded"
