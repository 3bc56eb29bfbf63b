"""A large sweep's picture and a wide compare stay within a bounded memory of the API worker."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import requests
import sqlalchemy as sa

from service.db import make_engine, make_session_factory, session_scope
from service.jobspec import validate_job
from service.loss_store import pack
from service.models import Job, LossChunk, Sweep
from service.sweeps.store import insert_sweep_jobs
from tests.support.api_process import ApiProcess
from tests.support.waiting import wait_until

JOBS = 10_000
STEPS = 1_000
# Growth of the worker's peak RSS a request may cause: the sweep's rows and a sample of its
# curves, never every history (reading them all took ~460-500 MB more).
PEAK_GROWTH_MB = 120


def large_sweep(database_url: str) -> tuple[int, list[int]]:
    """A finished sweep of JOBS jobs of STEPS steps each, written straight to the database."""
    engine = make_engine(database_url)
    factory = make_session_factory(engine, writer=True)
    spec = validate_job({"stage": "optim", "iterations": STEPS})
    specs = [{**spec, "lr": 10.0 ** -(k % 5), "seed": k} for k in range(JOBS)]
    with session_scope(factory) as session:
        sweep = Sweep(name="big", seed=1, request={"name": "big"}, varied=["lr"], job_count=JOBS)
        ids = [job_id for job_id, _ in insert_sweep_jobs(session, sweep, specs, ["cpu"] * JOBS)]
        sweep_id = sweep.id
    curve = 10.0 * 0.995 ** np.arange(STEPS)
    for start in range(0, JOBS, 500):
        with session_scope(factory) as session:
            rows = [
                {"job_id": job_id, "first_step": 0, "count": STEPS, "data": pack(curve * (1 + k))}
                for k, job_id in enumerate(ids[start : start + 500])
            ]
            session.execute(sa.insert(LossChunk), rows)
    with session_scope(factory) as session:
        session.execute(
            sa.update(Job)
            .where(Job.sweep_id == sweep_id)
            .values(status="succeeded", steps_done=STEPS, final_loss=float(curve[-1]))
        )
    engine.dispose()
    return sweep_id, ids


def worker_pid(server: ApiProcess) -> int:
    """The one gunicorn worker's pid (a child of the master, which `trainq api` execs into)."""
    assert server.process is not None
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children")
    wait_until(lambda: children.read_text().split(), 30, "gunicorn to fork its worker")
    (pid,) = children.read_text().split()
    return int(pid)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set since it started, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) / 1024


def test_a_large_sweeps_plot_and_compare_bound_the_workers_memory(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    sweep_id, ids = large_sweep(database_url)
    server = ApiProcess(database_url, broker_url, tmp_path, workers=1).start()
    try:
        pid = worker_pid(server)
        # Given a worker that has drawn one picture already (matplotlib loaded, its caches warm)
        warm = requests.get(f"{server.url}/api/v1/jobs/{ids[0]}/plot.png", timeout=60)
        assert warm.status_code == 200
        before = peak_rss_mb(pid)
        # When it draws the 10,000-job sweep and compares 1,000 of its jobs
        plot = requests.get(f"{server.url}/api/v1/sweeps/{sweep_id}/plot.png", timeout=120)
        assert plot.status_code == 200, plot.text
        jobs = ",".join(map(str, ids[:1000]))
        compare = requests.get(
            f"{server.url}/api/v1/compare?jobs={jobs}&pairs_limit=0", timeout=120
        )
        assert compare.status_code == 200, compare.text
        assert len(compare.json()["summaries"]) == 1000
        growth = peak_rss_mb(pid) - before
        # Then its peak resident memory grew by a bounded amount
        print(f"peak RSS {before:.0f} MB before, grew {growth:.0f} MB")
        assert growth < PEAK_GROWTH_MB, server.log_tail()
    finally:
        server.stop()
