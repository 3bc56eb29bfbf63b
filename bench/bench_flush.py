"""Time one flush of a median-rule sweep's fused stack as its sweep grows, old median read vs new.

    python -m bench.bench_flush [--ended 1000,10000] [--stack 16] [--steps 1024] [--repeat 5]
                                [--backends sqlite,postgresql] [--no-record]

A sweep with `early_stop: median` whose `--ended` jobs have succeeded, each with a `--steps`-step
history in 256-step chunks (what a worker stores), and a stack of `--stack` running jobs. Each
repeat times one flush, `worker.attempts.record.record_chunks` storing a 256-step chunk for every
job of the stack inside the write transaction that locks their rows (rolled back after, so every
repeat does the same work), three ways, alternating: the median read as it was (inside that
transaction, a query per job, every ended job's whole chunk fetched and unpacked); as it is now
(`median_reads`: one query per flush and step, 8 bytes per ended job, in a read transaction
before the write, timed apart); and with no rule read at all (the rest of the flush). Medians.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.orm as so

from bench.in_process import each_database, parse_with_backends
from bench.report import machine, median, publish, spread, table
from service.db import make_engine, make_session_factory, session_scope
from service.jobs import new_job
from service.jobspec import validate_job
from service.loss_store import pack, unpack
from service.models import Job, JobStatus, LossChunk, Sweep
from service.sweeps import early_stop
from service.sweeps.early_stop import WORST, Median, StepLosses, median_stops
from worker.attempts import record
from worker.attempts.claims import Claim, claim_job
from worker.attempts.record import median_reads, record_chunks

CHUNK = 256
RULE = {"rule": "median", "warmup": 2}


def old_losses_at(
    session: so.Session, sweep_id: int, step: int, *where: sa.ColumnElement[bool]
) -> list[float]:
    """The median's read before: every matching job's whole chunk at the step, unpacked."""
    covers = sa.and_(
        LossChunk.job_id == Job.id,
        LossChunk.first_step <= step,
        LossChunk.first_step + LossChunk.count > step,
    )
    diverged = Job.status == JobStatus.DIVERGED.value
    query = (
        sa.select(diverged.label("diverged"), LossChunk.first_step, LossChunk.data)
        .select_from(Job)
        .outerjoin(LossChunk, covers)
        .where(Job.sweep_id == sweep_id, sa.or_(LossChunk.job_id.is_not(None), diverged), *where)
    )
    values = []
    for is_diverged, first, data in session.execute(query):
        value = WORST if is_diverged else float(unpack(data)[step - first])
        values.append(value if math.isfinite(value) else WORST)
    return values


def old_decide(
    reads: StepLosses, rule: early_stop.Rule, job: Job, first: int, losses: Sequence[float]
) -> tuple[int, float] | None:
    """The median rule's decision as it was: its own query for each job of the flush."""
    assert isinstance(rule, Median)
    step = first + len(losses) - 1
    if job.sweep_id is None or step < rule.warmup or step >= job.iterations - 1:
        return None
    if job.min_loss is None:
        return None
    ended = Job.status.in_([JobStatus.SUCCEEDED.value, JobStatus.DIVERGED.value])
    others = old_losses_at(reads.session, job.sweep_id, step, ended, Job.id != job.id)
    return (step, float(losses[-1])) if median_stops(job.min_loss, others) else None


def no_decision(*_: object) -> None:
    """No rule read at all: what the rest of the flush costs."""
    return None


def fill(factory: so.sessionmaker[so.Session], ended: int, stack: int, steps: int) -> list[Claim]:
    """The sweep, its ended jobs' histories, and the stack's claims (each job `steps` long)."""
    rng = random.Random(ended)
    fields = validate_job({"stage": "nn", "iterations": steps})
    with session_scope(factory) as session:
        sweep = Sweep(name="flush", seed=0, request={"name": "flush", "early_stop": RULE})
        session.add(sweep)
        session.flush()
        jobs = [new_job(fields, "cpu") for _ in range(ended + stack)]
        for job in jobs:
            job.sweep_id = sweep.id
        session.add_all(jobs)
        session.flush()
        for job in jobs[:ended]:
            job.status, job.steps_done = JobStatus.SUCCEEDED, steps
        rows = [
            {"job_id": job.id, "first_step": first, "count": CHUNK, "data": chunk_of(rng)}
            for job in jobs[:ended]
            for first in range(0, steps, CHUNK)
        ]
        session.connection().execute(sa.insert(LossChunk), rows)
        ids = [job.id for job in jobs[ended:]]
    with session_scope(factory) as session:
        claims = [claim_job(session, job_id, "bench", 3600, 3)[0] for job_id in ids]
    return [claim for claim in claims if claim is not None]


def chunk_of(rng: random.Random) -> bytes:
    """256 plausible losses, packed."""
    return pack([rng.uniform(0.5, 2.0) for _ in range(CHUNK)])


def time_flush(
    factory: so.sessionmaker[so.Session],
    readers: so.sessionmaker[so.Session] | None,
    claims: list[Claim],
    first: int,
    decide: Callable[..., tuple[int, float] | None],
) -> tuple[float, float]:
    """Seconds of one flush of the stack: the read before its write (with `readers`, as the
    worker now does), and the write transaction holding the rows (rolled back)."""
    rng = random.Random(first)
    chunks = [(claim, first, [rng.uniform(0.5, 2.0) for _ in range(CHUNK)]) for claim in claims]
    summaries = [claim.summary() for claim in claims]
    record.decide = decide
    read = 0.0
    known = None
    if readers is not None:
        start = time.perf_counter()
        with readers() as session:
            known = median_reads(session, chunks)
        read = time.perf_counter() - start
    with factory() as session:
        session.begin()
        start = time.perf_counter()
        record_chunks(session, chunks, 3600, known)
        write = time.perf_counter() - start
        session.rollback()
    for claim, summary in zip(claims, summaries, strict=True):
        claim.restore(summary)
    return read, write


def run_backend(name: str, url: str, args: argparse.Namespace) -> list[list[object]]:
    """Old and new flush times for each sweep size on one backend."""
    engine = make_engine(url)
    factory = make_session_factory(engine, writer=True)
    new_decide = early_stop.decide
    rows: list[list[object]] = []
    try:
        for ended in map(int, args.ended.split(",")):
            claims = fill(factory, ended, args.stack, args.steps)
            first = args.steps // 2
            readers = make_session_factory(engine)
            # (decision, reader sessions): the read inside the write, or before it
            ways = {
                "old": (old_decide, None),
                "new": (new_decide, readers),
                "none": (no_decision, None),
            }
            reads: dict[str, list[float]] = {which: [] for which in ways}
            writes: dict[str, list[float]] = {which: [] for which in ways}
            time_flush(factory, readers, claims, first, new_decide)  # warm-up
            for repeat in range(args.repeat):
                order = list(ways) if repeat % 2 == 0 else list(reversed(ways))
                for which in order:
                    decide, way = ways[which]
                    read, write = time_flush(factory, way, claims, first, decide)
                    reads[which].append(read * 1000)
                    writes[which].append(write * 1000)
            old, new, none = (median(writes[which]) for which in ("old", "new", "none"))
            before = median(reads["new"])
            rows.append(
                [
                    name,
                    f"{ended:,}",
                    f"{old:.1f} ({spread(writes['old'])})",
                    f"{new:.1f} ({spread(writes['new'])})",
                    f"{before:.1f} ({spread(reads['new'])})",
                    f"{none:.1f}",
                    f"{old / new:.1f}x",
                    f"{old / (new + before):.1f}x",
                ]
            )
            print(rows[-1], flush=True)
    finally:
        record.decide = new_decide
        engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ended", default="1000,10000")
    parser.add_argument("--stack", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    args = parse_with_backends(parser)
    started = machine()
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend, url in each_database(args.backends, Path(tmp)):
            rows += run_backend(backend, url, args)
    headers = [
        "backend",
        "ended jobs",
        "old: write txn ms (min..max)",
        "new: write txn ms",
        "new: read before it ms",
        "no rule: write txn ms",
        "old / new write txn",
        "old / new in all",
    ]
    body = (
        f"One flush of a stack of {args.stack} median-rule jobs (a 256-step chunk each) in its"
        f" write transaction; the ended jobs have {args.steps}-step histories; median of"
        f" {args.repeat}, the three ways alternating.\n\n" + table(headers, rows)
    )
    title = "Median rule: a flush as the sweep grows (bench_flush)"
    publish(title, started, body, not args.no_record)


if __name__ == "__main__":
    main()
