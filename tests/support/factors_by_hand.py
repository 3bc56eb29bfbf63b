"""The factor table recomputed from the stored loss histories, independently of service.factors."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models import Job
from tests.support.loss_chunks import stored_rows


def last_losses(session: so.Session, job_ids: list[int]) -> dict[int, float]:
    """Each job's loss at its last stored step, read row by row."""
    last: dict[int, float] = {}
    for job_id, _, loss in stored_rows(session, job_ids):
        last[job_id] = loss
    return last


def worst_seen(session: so.Session, jobs: dict[int, Job]) -> float:
    """log10 of the worst loss a diverged run must rank below, from the rows: succeeded jobs'
    last losses, pruned jobs' losses at their rung, every job's loss at step 0."""
    seen = []
    for job_id, step, loss in stored_rows(session, list(jobs)):
        job = jobs[job_id]
        at_rung = job.status == "pruned" and step == job.pruned_at
        last = job.status == "succeeded" and step == job.steps_done - 1
        if (step == 0 or at_rung or last) and math.isfinite(loss):
            seen.append(loss)
    return math.log10(max(seen))


def assert_factors_match(session: so.Session, sweep_id: int, table: dict[str, Any]) -> None:
    """Every level mean/std/n, share, best config and best lr of `table`, checked by hand."""
    jobs = {j.id: j for j in session.scalars(sa.select(Job).where(Job.sweep_id == sweep_id))}
    last = last_losses(session, list(jobs))
    finite = {
        i: math.log10(last[i])
        for i, job in jobs.items()
        if job.status == "succeeded" and math.isfinite(last[i])
    }
    diverged = [i for i, job in jobs.items() if job.status == "diverged"]
    worst = worst_seen(session, jobs) + 1.0
    outcome = {**finite, **dict.fromkeys(diverged, worst)}
    assert table["diverged"] == len(diverged)
    assert table["used"] == len(outcome)
    if diverged:
        assert table["diverged_value"] == pytest.approx(worst)
    ys = list(outcome.values())
    grand = sum(ys) / len(ys)
    total_ss = sum((y - grand) ** 2 for y in ys)
    assert table["grand_mean"] == pytest.approx(grand)
    for factor, column in (("optimizer", "optimizer"), ("lr", "lr")):
        levels: dict[Any, list[float]] = defaultdict(list)
        for job_id, y in outcome.items():
            levels[getattr(jobs[job_id], column)].append(y)
        between = 0.0
        for value, values in levels.items():
            mean = sum(values) / len(values)
            between += len(values) * (mean - grand) ** 2
            key = value if isinstance(value, str) else repr(value)
            got = table["factors"][factor]["levels"][key]
            assert got["value"] == value
            assert got["n"] == len(values)
            assert got["mean"] == pytest.approx(mean)
            if len(values) == 1:
                assert got["std"] is None
                continue
            spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            assert got["std"] == pytest.approx(spread, abs=1e-12)
        assert table["factors"][factor]["share"] == pytest.approx(between / total_ss)
    configs: dict[tuple, list[float]] = defaultdict(list)
    for job_id, y in outcome.items():
        configs[(jobs[job_id].optimizer, jobs[job_id].lr)].append(y)

    def mean_of(key: tuple) -> float:
        return sum(configs[key]) / len(configs[key])

    # A configuration whose runs all diverged is never the best.
    kept = [
        key
        for key in configs
        if any(
            jobs[i].status != "diverged" for i in outcome if (jobs[i].optimizer, jobs[i].lr) == key
        )
    ]
    best = min(kept, key=mean_of)
    assert table["best_config"]["config"] == {"optimizer": best[0], "lr": best[1]}
    assert table["best_config"]["mean"] == pytest.approx(mean_of(best))
    for entry in table["best_lr"]:
        mine = [key for key in kept if key[0] == entry["optimizer"]]
        assert entry["lr"] == (min(mine, key=mean_of)[1] if mine else None)
    assert {e["optimizer"] for e in table["best_lr"]} == {o for o, _ in configs}
