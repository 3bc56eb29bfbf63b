"""A worker's shutdown: on SIGTERM its running jobs checkpoint at once and go back to the queue.

Celery's warm shutdown waits for every running task to end, which for a long job is hours;
`docker stop` and systemd give a process seconds. The main process raises a flag in memory its
pool processes share (made before they fork), and each job sees `requested()` at its next step.
"""

from __future__ import annotations

import mmap
import signal
import threading
from types import FrameType

# One byte shared over fork with every pool process: 1 once the worker is shutting down.
_shared = mmap.mmap(-1, 1)
_local = threading.Event()


def requested() -> bool:
    """Whether this worker is stopping: running jobs checkpoint and hand back."""
    return _local.is_set() or _shared[0] == 1


def request() -> None:
    """Ask this process and the pool processes it forked to hand their jobs back."""
    _local.set()
    _shared[0] = 1


def reset() -> None:
    """Forget a request in this process only (a new pool process, or a test)."""
    _local.clear()


def reset_shared() -> None:
    """Forget a request for every process sharing the flag (a test)."""
    _local.clear()
    _shared[0] = 0


def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    """A SIGTERM sent to a pool process itself (systemd signals them all): hand back."""
    _local.set()


def handle_sigterm_here() -> None:
    """Make SIGTERM in this pool process a request to hand back, not a kill mid-step.

    billiard installs its own handler after the pool process's initializer, so this runs as
    each task starts; it is a no-op once installed.
    """
    if signal.getsignal(signal.SIGTERM) is not on_sigterm:
        signal.signal(signal.SIGTERM, on_sigterm)
