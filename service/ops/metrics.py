"""What /metrics reports about the deployment, read from SQL and Redis at each scrape, so every
API process reports the same figures; and the reconciler's pass record it reads back."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import redis
import sqlalchemy as sa
import sqlalchemy.orm as so
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.choices import QUEUES
from service.config import Config
from service.db import database_now
from service.models import Job, JobStatus
from service.ops.queued_messages import queue_keys

log = logging.getLogger(__name__)

NAMESPACE = "trainq"
# The reconciler's record in Redis: a hash of counters and the time of its last pass.
RECONCILER_KEY = "trainq:metrics:reconciler"


def redis_client(url: str) -> redis.Redis:
    """A client that gives up quickly: a scrape must answer even with Redis gone."""
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def record_reconcile_pass(
    client: redis.Redis, counts: dict[str, int] | None, seconds: float
) -> None:
    """Count one reconciler pass (None: it failed) and what it re-sent, for every scrape to read."""
    fields = {"passes": 1} if counts is not None else {"failed_passes": 1}
    if counts:
        # A running job re-sent or given up on is one whose lease ran out.
        fields["leases_expired"] = counts.get("resent", 0) + counts.get("failed", 0)
        fields["sent"] = counts.get("sent", 0) + counts.get("lost", 0)
    try:
        pipe = client.pipeline()
        for name, value in fields.items():
            pipe.hincrby(RECONCILER_KEY, name, value)
        pipe.hset(RECONCILER_KEY, mapping={"last_pass": time.time(), "last_seconds": seconds})
        pipe.execute()
    except redis.RedisError as error:  # metrics never stop the reconciler
        log.debug("reconciler metrics not recorded: %s", error)


class DeploymentCollector(Collector):
    """Jobs, queues, workers and the reconciler, as gauges and counters from SQL and Redis."""

    def __init__(self, sessions: so.sessionmaker[so.Session], config: Config) -> None:
        self.sessions = sessions
        self.config = config

    def collect(self) -> Iterator[Metric]:
        """Each family; a source that does not answer is reported down, its figures left out."""
        up = GaugeMetricFamily(
            f"{NAMESPACE}_source_up", "Whether /metrics could read a source", labels=["source"]
        )
        try:
            yield from self._from_database()
            up.add_metric(["database"], 1)
        except sa.exc.SQLAlchemyError as error:
            log.warning("metrics: database unavailable: %s", error)
            up.add_metric(["database"], 0)
        try:
            yield from self._from_redis()
            up.add_metric(["redis"], 1)
        except redis.RedisError as error:
            log.warning("metrics: redis unavailable: %s", error)
            up.add_metric(["redis"], 0)
        yield up

    def _from_database(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            f"{NAMESPACE}_jobs", "Jobs by status and queue", labels=["status", "queue"]
        )
        oldest = GaugeMetricFamily(
            f"{NAMESPACE}_oldest_queued_job_age_seconds",
            "Age of the oldest queued job per queue (0 when none waits)",
            labels=["queue"],
        )
        steps = CounterMetricFamily(
            f"{NAMESPACE}_training_steps",
            "Training steps stored, all jobs (rate() is steps per second)",
        )
        retries = CounterMetricFamily(
            f"{NAMESPACE}_job_retries", "Attempts after a job's first, all jobs"
        )
        busy = GaugeMetricFamily(
            f"{NAMESPACE}_workers_busy", "Workers holding a live lease, per queue", labels=["queue"]
        )
        beat = GaugeMetricFamily(
            f"{NAMESPACE}_worker_last_heartbeat_timestamp_seconds",
            "When each busy worker last renewed a lease (Unix time)",
            labels=["worker"],
        )
        expired = GaugeMetricFamily(
            f"{NAMESPACE}_jobs_lease_expired",
            "Running jobs whose lease has run out, waiting for the reconciler",
        )
        with self.sessions() as session:
            now = database_now(session)  # the clock the leases were stamped on
            present = {(s.value, q): 0 for s in JobStatus for q in QUEUES}
            for status, queue, count in session.execute(
                sa.select(Job.status, Job.queue, sa.func.count()).group_by(Job.status, Job.queue)
            ):
                present[(status, queue)] = count
            for (status, queue), count in sorted(present.items()):
                jobs.add_metric([status, queue], count)
            for queue in QUEUES:
                first = session.scalar(
                    sa.select(sa.func.min(Job.created_at)).where(
                        Job.status == JobStatus.QUEUED, Job.queue == queue
                    )
                )
                oldest.add_metric([queue], (now - first).total_seconds() if first else 0.0)
            total_steps, total_retries = session.execute(
                sa.select(
                    sa.func.coalesce(sa.func.sum(Job.steps_done), 0),
                    sa.func.coalesce(
                        sa.func.sum(sa.case((Job.attempts > 1, Job.attempts - 1), else_=0)), 0
                    ),
                )
            ).one()
            steps.add_metric([], float(total_steps))
            retries.add_metric([], float(total_retries))
            # One pass over the running jobs: each worker's latest lease, and the lapsed ones.
            running = session.execute(
                sa.select(
                    Job.worker,
                    Job.queue,
                    sa.func.max(Job.lease_expires_at),
                    sa.func.sum(sa.case((Job.lease_expires_at < now, 1), else_=0)),
                )
                .where(Job.status == JobStatus.RUNNING)
                .group_by(Job.worker, Job.queue)
            ).all()
        per_queue = dict.fromkeys(QUEUES, 0)
        last: dict[str, float] = {}
        lease = self.config.lease_seconds
        lapsed = 0
        for worker, queue, lease_end, expired_here in running:
            lapsed += expired_here or 0
            if worker is None:
                continue
            if lease_end is not None and lease_end > now:
                per_queue[queue] = per_queue.get(queue, 0) + 1
            if lease_end is not None:
                renewed = lease_end.timestamp() - lease
                last[worker] = max(last.get(worker, renewed), renewed)
        for queue, count in sorted(per_queue.items()):
            busy.add_metric([queue], count)
        for worker, when in sorted(last.items()):
            beat.add_metric([worker], when)
        expired.add_metric([], lapsed)
        yield from (jobs, oldest, steps, retries, busy, beat, expired)

    def _from_redis(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            f"{NAMESPACE}_queue_messages",
            "Messages waiting in the broker per queue",
            labels=["queue"],
        )
        client = redis_client(self.config.broker_url)
        try:
            pipe = client.pipeline()
            for queue in QUEUES:
                for key in queue_keys([queue]):
                    pipe.llen(key)
            lengths = iter(pipe.execute())
            for queue in QUEUES:
                waiting.add_metric([queue], sum(next(lengths) for _ in queue_keys([queue])))
            stored: dict[bytes, bytes] = client.hgetall(RECONCILER_KEY)  # type: ignore[assignment]
            record = {k.decode(): float(v) for k, v in stored.items()}
        finally:
            client.close()
        yield waiting
        passes = CounterMetricFamily(
            f"{NAMESPACE}_reconciler_passes", "Reconciler passes", labels=["outcome"]
        )
        passes.add_metric(["ok"], record.get("passes", 0.0))
        passes.add_metric(["failed"], record.get("failed_passes", 0.0))
        yield passes
        leases = CounterMetricFamily(
            f"{NAMESPACE}_leases_expired",
            "Running jobs whose lease ran out, re-sent or given up by the reconciler",
        )
        leases.add_metric([], record.get("leases_expired", 0.0))
        yield leases
        last_pass = record.get("last_pass")
        lag = GaugeMetricFamily(
            f"{NAMESPACE}_reconciler_lag_seconds",
            "Seconds since the reconciler's last pass ended (NaN: none recorded)",
        )
        lag.add_metric([], time.time() - last_pass if last_pass else float("nan"))
        yield lag
        took = GaugeMetricFamily(
            f"{NAMESPACE}_reconciler_last_pass_seconds", "How long the last reconciler pass took"
        )
        took.add_metric([], record.get("last_seconds", float("nan")))
        yield took
