"""Run one job: claim it, train it with its losses streamed to the database, record the outcome."""

from __future__ import annotations

import logging

import torch

from service.db import session_scope
from service.jobs import job_spec
from service.models import Job, JobStatus
from worker.recording import Claim, claim_job, finish_job, mark_started_on, record_chunk
from worker.state import session_factory, worker_config
from worker.training import LossRecorder, TrainSpec, train

log = logging.getLogger(__name__)


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
    with session_scope(factory) as session:
        claim, state = claim_job(session, job_id, worker_name, config.lease_seconds)
        job = session.get(Job, job_id) if claim else None
        fields = job_spec(job) if job else None
        queue = job.queue if job else "cpu"
    if claim is None or fields is None:
        log.info("job %s not run: %s", job_id, state)
        return state

    def write_chunk(first_step: int, losses: list[float]) -> bool:
        with session_scope(factory) as session:
            return record_chunk(session, claim, first_step, losses, config.lease_seconds)

    ran_on = None
    try:
        spec = TrainSpec.from_fields(fields)
        device = resolve_device(fields["device"], queue)
        ran_on = describe_device(device)
        with session_scope(factory) as session:
            mark_started_on(session, claim, ran_on, torch.__version__)
        recorder = LossRecorder(
            spec.iterations,
            device,
            write_chunk,
            flush_every=config.flush_every,
            flush_seconds=config.flush_seconds,
        )
        train(spec, device, recorder)
        recorder.close()
    except Exception as error:
        log.exception("job %s failed", job_id)
        return _finish(factory, claim, JobStatus.FAILED, ran_on, error=_describe(error))
    if recorder.diverged_at is not None:
        return _finish(factory, claim, JobStatus.DIVERGED, ran_on, diverged_at=recorder.diverged_at)
    if recorder.stopped:
        return _finish(factory, claim, JobStatus.CANCELLED, ran_on)
    return _finish(factory, claim, JobStatus.SUCCEEDED, ran_on)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:4000]


def _finish(factory, claim: Claim, status: str, ran_on: str | None, **outcome) -> str:  # type: ignore[no-untyped-def]
    with session_scope(factory) as session:
        written = finish_job(
            session, claim, status, ran_on=ran_on, torch_version=torch.__version__, **outcome
        )
    return str(status) if written else "superseded"
