"""The best final loss a sweep had found against the training steps it had spent.

The sweep's jobs that have ended, in the order they finished (finished_at, then id), each add
their steps_done to the steps spent: a pruned, diverged, failed or cancelled job's steps were
spent too. Only a succeeded job with a finite final loss can improve the best; a pruned job's
last loss is where its rule stopped it, not a final loss, and a diverged job has none. One point
per ended job: after it, `spent` steps in all and `best` the lowest final loss so far (None until
a job has succeeded).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models import TERMINAL_STATES, Job, JobStatus

RULE = (
    "ended jobs in order of finishing; each adds its steps_done to the steps spent (pruned,"
    " diverged, failed and cancelled ones too); the best is the lowest final loss of the"
    " succeeded ones so far"
)


def _finish_order(row: dict[str, Any]) -> tuple[bool, datetime | None, int]:
    # A terminal row always has finished_at; one written without it goes last rather than fail.
    finished = row.get("finished_at")
    return (finished is None, finished, row["id"])


def best_so_far(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per ended job, in finishing order (see the module docstring)."""
    points: list[dict[str, Any]] = []
    spent, best, best_id = 0, None, None
    ended = [row for row in rows if row["status"] in TERMINAL_STATES]
    for row in sorted(ended, key=_finish_order):
        spent += row["steps_done"] or 0
        loss = row.get("final_loss")
        counts = row["status"] == JobStatus.SUCCEEDED.value
        final = loss if counts and loss is not None and math.isfinite(loss) else None
        if final is not None and (best is None or final < best):
            best, best_id = final, row["id"]
        points.append(
            {
                "job_id": row["id"],
                "status": row["status"],
                "steps": row["steps_done"] or 0,
                "spent": spent,
                "final_loss": final,
                "best": best,
                "best_job_id": best_id,
            }
        )
    return points


def ended_rows(session: so.Session, sweep_id: int) -> list[dict[str, Any]]:
    """The sweep's ended jobs with what the curve reads, in one query."""
    query = sa.select(Job.id, Job.status, Job.steps_done, Job.final_loss, Job.finished_at).where(
        Job.sweep_id == sweep_id, Job.status.in_(TERMINAL_STATES)
    )
    return [dict(row._mapping) for row in session.execute(query)]


def best_so_far_body(session: so.Session, sweep_id: int) -> dict[str, Any]:
    """GET /sweeps/{id}/best-so-far: the points, the steps spent in all and the best point."""
    points = best_so_far(ended_rows(session, sweep_id))
    best_id = points[-1]["best_job_id"] if points else None
    # The point at which the sweep's best job finished: the steps it took to find it.
    best = next((p for p in points if p["job_id"] == best_id), None)
    return {
        "sweep_id": sweep_id,
        "rule": RULE,
        "total_steps": points[-1]["spent"] if points else 0,
        "best": best,
        "points": points,
    }
