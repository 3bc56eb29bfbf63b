"""The search controller: asks a search sweep's next trials as earlier ones end, under a lease.

Safe to run in several places at once: a controller asks the sampler only while it holds the
sweep's lease, outside any write, then stores the trials in a transaction that opens with the
UPDATE renewing that lease (a row lock on PostgreSQL, the write lock on SQLite) and checks that
no ask was stored meanwhile; the trial rows and the sweep's counters commit together, so a
controller killed at any point leaves either a whole ask or none. Its
successor, once the lease has run out, rebuilds the sampler from the tables (see search.py).
Trials are sent after their commit (service/dispatch/send.py); one whose send failed is the
reconciler's to send. The owner's active cap holds trials back (service/active_cap.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from celery import Celery

from service.active_cap import active_jobs
from service.config import Config
from service.db import database_now, read_scope, session_scope
from service.dispatch.send import send
from service.jobs import new_job, queue_for
from service.jobspec import SpecError, validate_job
from service.models import Job, JobStatus, Sweep
from service.sweeps.request import SweepRequest, validate_sweep
from service.sweeps.search import ask, trial_fields, trial_seed
from service.sweeps.wakeup import Wakeups

log = logging.getLogger(__name__)
IN_FLIGHT = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def asks_left(request: SweepRequest, sweep: Sweep) -> bool:
    """Whether the sweep still wants trials: fewer than n stored, and skips within reason."""
    assert request.search is not None
    n = request.search.n
    return not sweep.cancel_requested and sweep.job_count < n and sweep.trials_asked < 2 * n + 100


def open_sweeps(session: so.Session) -> list[int]:
    """Search sweeps that want more trials."""
    query = sa.select(Sweep.id).where(
        Sweep.trials_wanted.is_not(None),
        Sweep.job_count < Sweep.trials_wanted,
        Sweep.cancel_requested.is_(False),
    )
    return list(session.scalars(query.order_by(Sweep.id)))


def hold(session: so.Session, sweep_id: int, controller: str, lease_seconds: float) -> bool:
    """Take or renew the sweep's lease for this controller, in one UPDATE; whether it holds it."""
    now = database_now(session)  # controllers on other hosts compare the same lease
    result = session.connection().execute(
        sa.update(Sweep)
        .where(
            Sweep.id == sweep_id,
            sa.or_(
                Sweep.controller.is_(None),
                Sweep.controller == controller,
                Sweep.controller_expires_at < now,
            ),
        )
        .values(controller=controller, controller_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


@dataclass
class Plan:
    """Trials asked outside any write, and the sweep's counters they were asked from."""

    asked_from: int
    specs: list[dict[str, Any]]
    skipped: int
    asks: int
    done: bool


def fixed_capacity(slots: int) -> Callable[[str], int]:
    """The same number of slots on every queue."""
    return lambda queue: slots


class LiveCapacity:
    """Pool slots of the live workers per queue, asked of the broker at most every `ttl` s."""

    def __init__(self, app: Celery, fallback: int, ttl: float = 30.0) -> None:
        self.app, self.fallback, self.ttl = app, fallback, ttl
        self.slots: dict[str, int] = {}
        self.asked_at = -math.inf

    def __call__(self, queue: str) -> int:
        """Slots on the queue, or the fallback when no worker answers."""
        if time.monotonic() - self.asked_at > self.ttl:
            self.slots = self._ask()
            self.asked_at = time.monotonic()
        return self.slots.get(queue) or self.fallback

    def _ask(self) -> dict[str, int]:
        inspect = self.app.control.inspect(timeout=1.0)
        queues = inspect.active_queues() or {}
        stats = inspect.stats() or {}
        slots: dict[str, int] = {}
        for worker, served in queues.items():
            size = int(stats.get(worker, {}).get("pool", {}).get("max-concurrency", 1))
            for queue in served:
                slots[queue["name"]] = slots.get(queue["name"], 0) + size
        return slots


def room(session: so.Session, owner: str | None, config: Config, *, lock: bool = True) -> float:
    """More jobs the owner may have active (TRAINQ_MAX_ACTIVE_JOBS_PER_OWNER); inf: no cap."""
    cap = config.max_active_jobs_per_owner
    if cap <= 0:
        return math.inf
    return max(0, cap - active_jobs(session, owner, lock=lock))


def plan_trials(
    session: so.Session, sweep: Sweep, config: Config, capacity: Callable[[str], int]
) -> Plan:
    """Ask the sampler for the sweep's next trials, validated as jobs (nothing written)."""
    request = validate_sweep(sweep.request)
    assert request.search is not None
    jobs = list(session.scalars(sa.select(Job).where(Job.sweep_id == sweep.id).order_by(Job.id)))
    in_flight = sum(job.status in IN_FLIGHT for job in jobs)
    device = request.base.get("device", "auto")
    parallel = request.search.parallel or capacity(queue_for(device, config.default_queue))
    seed = trial_seed(request, sweep.seed)
    # The owner's cap on active jobs holds trials back rather than be exceeded: fewer now, the
    # rest on a later pass as jobs end (re-checked under the owner's lock when written).
    # Unlocked here: the sampler may take seconds, and the owner's submissions must not wait.
    limit = min(parallel, in_flight + room(session, sweep.owner, config, lock=False))
    plan = Plan(sweep.trials_asked, [], 0, 0, False)
    # Counters as they will be once the plan is written, for asks_left.
    future = Sweep(
        job_count=sweep.job_count,
        trials_asked=sweep.trials_asked,
        cancel_requested=sweep.cancel_requested,
    )
    while in_flight < limit and asks_left(request, future):
        params = ask(request.search, sweep.seed, future.trials_asked, jobs)
        future.trials_asked += 1
        plan.asks += 1
        try:
            spec = validate_job(trial_fields(request, params, seed), config.limits)
        except SpecError as error:
            # Checked up front at the corners; one inside the space can still break a cap.
            log.info("sweep %d: trial %s skipped: %s", sweep.id, params, error.message)
            plan.skipped += 1
            continue
        plan.specs.append(spec)
        # The next ask sees this trial as running, as it will be.
        jobs.append(new_job(spec, ""))
        future.job_count += 1
        in_flight += 1
    plan.done = not asks_left(request, future)
    return plan


def ask_trials(
    factory: so.sessionmaker[so.Session],
    sweep_id: int,
    controller: str,
    config: Config,
    capacity: Callable[[str], int],
) -> list[tuple[int, str]]:
    """Store the sweep's next trials as queued jobs, if this controller holds it; (id, queue).

    The sampler (seconds for gp) runs between two short transactions, not inside a write:
    the write takes the lease again and stores the plan only if no ask was stored meanwhile.
    Trials stored earlier and never sent (a holder killed between its commit and its send, or
    a broker down) come first: the holder sends them again rather than wait for the reconciler.
    """
    with session_scope(factory) as session:
        if not hold(session, sweep_id, controller, config.controller_lease_seconds):
            return []
        unsent = unsent_trials(session, sweep_id)
    # Read-only: on SQLite a writer's scope would hold the write lock across the sampler and
    # the live-capacity question to the broker.
    with read_scope(factory) as session:
        plan = plan_trials(session, session.get_one(Sweep, sweep_id), config, capacity)
    if not plan.asks and not plan.done:
        return unsent
    with session_scope(factory) as session:
        if not hold(session, sweep_id, controller, config.controller_lease_seconds):
            return []
        sweep = session.get_one(Sweep, sweep_id, populate_existing=True)
        if sweep.cancel_requested:
            return []  # cancelled while the sampler ran: its queued trials are cancelled too
        if sweep.trials_asked != plan.asked_from:
            return unsent  # asked by another holder meanwhile: plan again from the tables
        if len(plan.specs) > room(session, sweep.owner, config):
            return unsent  # the owner's other jobs took the room meanwhile: plan again later
        jobs = [
            new_job(
                spec,
                queue_for(spec["device"], config.default_queue),
                sweep_id=sweep_id,
                owner=sweep.owner,
            )
            for spec in plan.specs
        ]
        session.add_all(jobs)
        session.flush()
        sweep.trials_asked += plan.asks
        sweep.skipped += plan.skipped
        sweep.job_count += len(jobs)
        if plan.done:
            # Done asking: n trials stored (or too many skipped), the sweep's size is final.
            sweep.trials_wanted = sweep.job_count
        return unsent + [(job.id, job.queue) for job in jobs]


def unsent_trials(session: so.Session, sweep_id: int) -> list[tuple[int, str]]:
    """The sweep's queued trials whose message never left; (id, queue).

    Sending one twice is harmless: a worker claims a job only while it is queued.
    """
    query = sa.select(Job.id, Job.queue).where(
        Job.sweep_id == sweep_id, Job.status == JobStatus.QUEUED, Job.enqueued_at.is_(None)
    )
    return [(row.id, row.queue) for row in session.execute(query.order_by(Job.id))]


def control_once(
    factory: so.sessionmaker[so.Session],
    app: Celery,
    config: Config,
    controller: str,
    capacity: Callable[[str], int] | None = None,
) -> int:
    """One pass over the open search sweeps; how many trials it sent (asked, or left unsent).

    `capacity(queue)` is how many trials a sweep that names no `parallel` keeps in flight
    (default: TRAINQ_SEARCH_PARALLEL; the long-running controller asks the live workers).
    """
    capacity = capacity or fixed_capacity(config.search_parallel)
    with factory() as session:
        sweep_ids = open_sweeps(session)
    total = 0
    for sweep_id in sweep_ids:
        trials = ask_trials(factory, sweep_id, controller, config, capacity)
        if not trials:
            continue
        total += len(trials)
        # Sent as the reconciler would send them again: trials that fuse go in batches, whose
        # stacks then refill from the sweep's next trials (see worker.attempts.refill).
        send(app, factory, trials)
    return total


def control_forever(
    factory: so.sessionmaker[so.Session], app: Celery, config: Config, controller: str
) -> None:
    """Drive search sweeps every `controller_seconds`, and as soon as a worker announces that a
    trial ended (see wakeup); surviving a broker or database outage."""
    capacity = LiveCapacity(app, config.search_parallel)
    wakeups = Wakeups(config.broker_url)
    while True:
        try:
            control_once(factory, app, config, controller, capacity)
        except Exception as error:  # keep going: the next pass retries
            log.warning("controller pass failed: %s", error)
        wakeups.wait(config.controller_seconds)
