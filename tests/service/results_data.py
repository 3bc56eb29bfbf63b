"""Rows for the results tests: jobs with stored histories, written straight to the database."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from service.loss_store import store_losses
from service.models import Job, Sweep

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def add_job(
    client: FlaskClient,
    session: so.Session,
    losses: list[float] | None = None,
    *,
    status: str = "succeeded",
    duration: float | None = 10.0,
    created: datetime | None = None,
    sweep_id: int | None = None,
    **fields: Any,
) -> int:
    """A job submitted through the API, then given a history and a finished state."""
    session.commit()  # end any read transaction: SQLite cannot upgrade a stale snapshot to write
    body = {"stage": "optim", **fields}
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.get_json()
    job_id = response.get_json()["id"]
    values: dict[str, Any] = {"status": status, "sweep_id": sweep_id}
    if losses:
        store_losses(session, job_id, 0, losses)
        finite = [v for v in losses if math.isfinite(v)]
        values.update(
            steps_done=len(losses),
            final_loss=losses[-1] if math.isfinite(losses[-1]) else None,
            min_loss=min(finite) if finite else None,
            diverged_at=None if math.isfinite(losses[-1]) else len(losses) - 1,
        )
    if created is not None:
        values["created_at"] = created
    if duration is not None:
        values["started_at"] = T0
        values["finished_at"] = T0 + timedelta(seconds=duration)
    session.execute(sa.update(Job).where(Job.id == job_id).values(**values))
    session.commit()
    return job_id


def add_sweep(session: so.Session, varied: list[str]) -> int:
    """An empty sweep row for jobs to point at."""
    sweep = Sweep(name="s", seed=1, request={"name": "s"}, varied=varied, job_count=0)
    session.add(sweep)
    session.commit()
    return sweep.id


def decay(start: float, rate: float, steps: int, wiggle: float = 0.0) -> list[float]:
    """A loss curve falling geometrically, with an optional periodic bump."""
    return [start * rate**k * (1 + wiggle * math.sin(k)) for k in range(steps)]


def expected_summary(steps: list[int], losses: list[float]) -> dict[str, Any]:
    """The compare summary, computed longhand from the rows."""
    initial = losses[0]
    finite = [(s, v) for s, v in zip(steps, losses, strict=True) if math.isfinite(v)]
    best_step, best = min(finite, key=lambda sv: (sv[1], sv[0]))
    below = {}
    for key, fraction in (("step_below_1pct", 0.01), ("step_below_0_1pct", 0.001)):
        below[key] = next((s for s, v in finite if v < fraction * initial), None)
    area, end = 0.0, 0
    while end < len(losses) and math.isfinite(losses[end]):
        end += 1
    for k in range(1, end):
        width = steps[k] - steps[k - 1]
        area += width * (math.log10(losses[k]) + math.log10(losses[k - 1])) / 2
    return {
        "initial": initial,
        "final": losses[-1] if math.isfinite(losses[-1]) else None,
        "min": best,
        "min_step": best_step,
        "auc_log10": area,
        **below,
    }


def expected_pair(
    a: tuple[list[int], list[float]], b: tuple[list[int], list[float]]
) -> tuple[float | None, int | None, int]:
    """Largest symmetric relative difference over common finite steps, its step, the count."""
    other = dict(zip(*b, strict=True))
    best, where, common = None, None, 0
    for step, va in zip(*a, strict=True):
        vb = other.get(step)
        if vb is None or not (math.isfinite(va) and math.isfinite(vb)):
            continue
        common += 1
        scale = max(abs(va), abs(vb))
        rel = abs(va - vb) / scale if scale else 0.0
        if best is None or rel > best:
            best, where = rel, step
    return best, where, common
