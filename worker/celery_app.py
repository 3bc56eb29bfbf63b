"""The worker's Celery app: `celery -A worker.celery_app worker -Q cpu` runs it."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from celery import signals

from service.broker import make_celery
from service.config import Config

if TYPE_CHECKING:
    from celery.apps.worker import Worker

# Celery's command line needs an app object at import; it opens no connection until used.
app = make_celery(Config.from_env())
app.conf.imports = ("worker.tasks",)

log = logging.getLogger(__name__)
# The worker's main process (a pool process has another pid; a threads pool the same).
_main_pid: int | None = None


def is_prefork(pool_cls: object) -> bool:
    """Whether a worker's pool (a name or a class, as Celery holds it) forks processes."""
    from celery import concurrency
    from celery.concurrency.prefork import TaskPool

    pool = concurrency.get_implementation(pool_cls)
    return isinstance(pool, type) and issubclass(pool, TaskPool)


@signals.celeryd_after_setup.connect
def _refuse_gpu_queue_without_cuda(sender: str, instance: Worker, **_kwargs: object) -> None:
    """A worker that consumes the gpu queue must have CUDA, or it would fail every job."""
    queues = set(instance.app.amqp.queues.consume_from or ())
    if "gpu" in queues:
        # Asking for CUDA in a parent that then forks leaves the children unable to use it.
        if is_prefork(instance.pool_cls):
            log.critical(
                "refusing to serve the gpu queue with the prefork pool: CUDA cannot be used "
                "across fork; start it with --pool threads (trainq worker --queues gpu does)"
            )
            raise SystemExit(2)
        import torch

        if not torch.cuda.is_available():
            log.critical("refusing to serve the gpu queue: CUDA is not available")
            raise SystemExit(3)


@signals.worker_init.connect
def _preload_training(sender: Worker, **_kwargs: object) -> None:
    """Import torch and worker.attempts before forking, so a new pool process starts at once."""
    import torch

    import worker.attempts.stacks  # noqa: F401
    from worker import shutdown, watchdog

    # Only prefork enforces task_time_limit (by killing the process): the others need a watchdog.
    watchdog.arm(not is_prefork(sender.pool_cls))
    # The flag pool processes read must exist before they fork.
    shutdown.reset_shared()
    global _main_pid
    _main_pid = os.getpid()

    # torch.optim's first Optimizer() imports torch._dynamo (~2 s): paid here, not by a job.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


@signals.worker_process_init.connect
def _configure_process(**_kwargs: object) -> None:
    """Each pool process: its own torch threads and database engine (never shared over fork)."""
    from worker import shutdown
    from worker.state import reset_process_state

    reset_process_state()
    shutdown.reset()


@signals.task_prerun.connect
def _sigterm_hands_back(**_kwargs: object) -> None:
    """In a pool process, a SIGTERM of its own asks its job to hand back (see shutdown)."""
    from worker import shutdown

    if _main_pid is not None and os.getpid() != _main_pid:
        shutdown.handle_sigterm_here()


@signals.worker_shutting_down.connect
def _hand_jobs_back(sig: str = "", how: str = "", **_kwargs: object) -> None:
    """On a warm shutdown (SIGTERM) running jobs checkpoint and go back to the queue at once."""
    from worker import shutdown

    if how == "Warm":
        shutdown.request()
