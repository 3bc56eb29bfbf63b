"""A worker's shutdown: on SIGTERM its running jobs checkpoint at once and go back to the queue.

Celery's warm shutdown waits for every running task to end, which for a long job is hours;
`docker stop` and systemd give a process seconds. The main process tells its pool processes
(prefork resets their SIGTERM to "die"), and each job sees `requested()` at its next step.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

_requested = threading.Event()


def requested() -> bool:
    """Whether this process was asked to stop: running jobs checkpoint and hand back."""
    return _requested.is_set()


def request() -> None:
    """Ask this process's running jobs to checkpoint and hand their jobs back."""
    _requested.set()


def reset() -> None:
    """Forget a request (a new pool process, or a test)."""
    _requested.clear()


def handle_sigterm_in_pool_process() -> None:
    """In a pool process, SIGTERM asks its job to hand back instead of killing it mid-step."""

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        request()

    signal.signal(signal.SIGTERM, on_sigterm)


def tell_pool_processes() -> None:
    """From the main process: pass the shutdown on to each child process (the pool's)."""
    request()
    for pid in child_pids(os.getpid()):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:  # it just exited
            continue
        log.info("asked pool process %d to hand its jobs back", pid)


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (Linux's /proc; none where it is absent)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children.extend(int(n) for n in (task / "children").read_text().split())
        except OSError:
            continue
    return children
