"""Run a Python module with trainq's clock off by TRAINQ_TEST_CLOCK_SKEW_SECONDS (a host's skew).

As a WorkerProcess prefix: `python -m tests.support.skewed_clock <python> -m celery ...`. The
Python-side now every trainq module reads (`service.models.base.utcnow`) is skewed before the
module runs, so what it imports afterwards, and the pool processes it forks, read the skewed
one; the database server's clock is left as it is.
"""

from __future__ import annotations

import os
import runpy
import sys
from datetime import datetime, timedelta

from service.models import base


def main() -> None:
    """Skew the clock, then run `<python> -m <module> args...` as that python would."""
    skew = timedelta(seconds=float(os.environ["TRAINQ_TEST_CLOCK_SKEW_SECONDS"]))
    real = base.utcnow

    def skewed() -> datetime:
        return real() + skew

    base.utcnow = skewed
    _python, flag, module, *args = sys.argv[1:]
    if flag != "-m":
        raise SystemExit(f"usage: skewed_clock <python> -m <module> args... (got {flag!r})")
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
