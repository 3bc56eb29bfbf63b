"""The Celery app both sides share: JSON only, queues cpu and gpu, late acks, prefetch one."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

from service.choices import QUEUES
from service.config import Config

TRAIN_TASK = "trainq.train_job"
BATCH_TASK = "trainq.train_batch"


def make_celery(config: Config) -> Celery:
    """A Celery app configured for trainq (tasks are registered by the worker package)."""
    app = Celery("trainq", broker=config.broker_url, set_as_current=False)
    # A job may legitimately run for hours: the broker must not hand its message to a
    # second worker while the first still trains (the reconciler covers real losses).
    visibility = int(os.environ.get("TRAINQ_VISIBILITY_TIMEOUT", 12 * 3600))
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        # Runaway jobs: a training stops at the soft limit between chunks (worker/attempts/);
        # the hard one kills the pool process (recorded by worker.tasks.TrainTaskRequest). 0: off.
        task_time_limit=config.job_hard_limit_seconds or None,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A pool process replacing a killed one may take a while to start on a busy machine;
        # Celery's 4 s default kills it again and again in that case.
        worker_proc_alive_timeout=60.0,
        task_default_queue="cpu",
        task_queues=tuple(Queue(name) for name in QUEUES),
        task_create_missing_queues=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": visibility,
            # Look for overdue messages every few seconds (kombu's default is ~100 s).
            "unacked_restore_interval": max(1, min(10, visibility // 4)),
            "unacked_restore_throttle": 1,
        },
        broker_heartbeat=None,
        # Task events (received, started, succeeded, ...) and task-sent events from the API, so
        # Celery Flower lists trainq's tasks; the jobs table stays the truth about jobs.
        worker_send_task_events=bool(config.task_events),
        task_send_sent_event=bool(config.task_events),
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
    )
    return app


def enqueue_jobs(app: Celery, jobs: list[tuple[int, str]]) -> None:
    """Send one training message per (job id, queue), over one broker connection."""
    # One Redis pipeline for all of them: a round trip per message made 1,000 cost ~1 s.
    with app.producer_or_acquire() as producer, producer.batch():
        for job_id, queue in jobs:
            app.send_task(TRAIN_TASK, args=[job_id], queue=queue, producer=producer)


def enqueue_batches(app: Celery, batches: list[tuple[str, list[int]]]) -> None:
    """Send one fused-training message per (queue, job ids), over one broker connection."""
    # The worker keeps each stack's hard limit; the message's covers one stack per job at most.
    limit = app.conf.task_time_limit
    with app.producer_or_acquire() as producer, producer.batch():
        for queue, job_ids in batches:
            app.send_task(
                BATCH_TASK,
                args=[list(job_ids)],
                queue=queue,
                producer=producer,
                time_limit=limit * len(job_ids) if limit else None,
            )
