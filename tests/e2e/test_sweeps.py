"""Sweeps end to end: HTTP -> bulk rows -> Redis -> real Celery workers -> leaderboard, factors,
cancel, and the `trainq sweep` CLI against a live HTTP server."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner

from service.cli import main
from service.models import Job
from tests.conftest import Stack
from tests.support.factors_by_hand import assert_factors_match, last_losses

SMALL = {"stage": "optim", "init": "normal", "iterations": 50, "N": 16, "D_in": 32, "H": 16}
GRID = {
    "name": "optimizer-x-lr",
    "base": {**SMALL, "D_out": 4},
    "grid": {"optimizer": ["sgd", "adam"], "lr": [1e-4, 1e-3, 1e-2]},
    "seeds": [1, 2],
}


def wait_for_sweep(stack: Stack, sweep_id: int, timeout: float = 240) -> dict[str, Any]:
    """Poll the sweep until every job has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep = stack.client.get(f"/api/v1/sweeps/{sweep_id}").get_json()
        if sweep["done"]:
            return sweep
        time.sleep(0.2)
    logs = "\n".join(w.log_tail() for w in stack.workers)
    raise AssertionError(f"sweep {sweep_id} not done in {timeout} s: {sweep}\n{logs}")


def sweep_jobs(stack: Stack, sweep_id: int) -> list[Job]:
    """The sweep's job rows, in the order they were made."""
    with stack.sessions() as session:
        query = sa.select(Job).where(Job.sweep_id == sweep_id).order_by(Job.id)
        return list(session.scalars(query))


def test_grid_sweep_finishes_with_a_right_leaderboard_and_factor_table(stack: Stack) -> None:
    # Given a 2 x 3 x 2 grid (optimizer x lr x seeds) submitted over HTTP.
    started = time.monotonic()
    sweep_id = stack.submit_sweep(GRID)
    # When the workers drain it.
    sweep = wait_for_sweep(stack, sweep_id)
    elapsed = time.monotonic() - started
    print(f"\n{stack.backend}: 12-job sweep finished in {elapsed:.1f} s")
    # Then every job ran and the leaderboard is the stored histories, ranked.
    assert sweep["counts"]["succeeded"] + sweep["counts"]["diverged"] == 12, sweep
    board = stack.client.get(f"/api/v1/sweeps/{sweep_id}/results").get_json()
    rows = board["results"]
    assert len(rows) == 12
    with stack.sessions() as session:
        last = last_losses(session, [row["id"] for row in rows])
        jobs = {j.id: j for j in session.scalars(sa.select(Job).where(Job.sweep_id == sweep_id))}
        for row in rows:
            job = jobs[row["id"]]
            assert row["final_loss"] == last[row["id"]] == job.final_loss
            assert (row["optimizer"], row["lr"], row["seed"]) == (job.optimizer, job.lr, job.seed)
            if row["status"] == "succeeded":
                assert row["steps_done"] == 50
        succeeded = [row for row in rows if row["status"] == "succeeded"]
        assert rows[: len(succeeded)] == succeeded
        assert [r["final_loss"] for r in succeeded] == sorted(r["final_loss"] for r in succeeded)
        # And the factor table agrees with the same histories summed by hand.
        table = stack.client.get(f"/api/v1/sweeps/{sweep_id}/factors").get_json()
        assert set(table["factors"]) == {"optimizer", "lr"}
        assert len(table["factors"]["optimizer"]["levels"]) == 2
        assert len(table["factors"]["lr"]["levels"]) == 3
        assert_factors_match(session, sweep_id, table)
    assert all(math.isfinite(e["share"]) for e in table["main_effects"])


def test_cancel_stops_running_jobs_and_queued_ones_never_start(stack: Stack) -> None:
    # Given a sweep of long jobs, two of them running (the worker has two processes).
    body = {
        "name": "long",
        "base": {**SMALL, "iterations": 100_000, "D_out": 2},
        "grid": {"lr": [1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 6e-5]},
        "fused": False,  # one message per job: two run, four wait (a stack would take all six)
    }
    sweep_id = stack.submit_sweep(body)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counts = stack.client.get(f"/api/v1/sweeps/{sweep_id}").get_json()["counts"]
        if counts["running"] == 2:
            break
        time.sleep(0.1)
    assert counts["running"] == 2, counts
    # When the sweep is cancelled.
    response = stack.client.post(f"/api/v1/sweeps/{sweep_id}/cancel")
    assert response.status_code == 202
    # The four queued jobs are cancelled by the request itself; a running one may already have
    # seen the flag at its next flush by the time the response counts.
    assert response.get_json()["counts"]["cancelled"] >= 4
    # Then everything ends promptly as cancelled; the queued ones never started.
    sweep = wait_for_sweep(stack, sweep_id, timeout=30)
    assert sweep["counts"]["cancelled"] == 6
    assert sweep["cancel_requested"]
    with stack.sessions() as session:
        jobs = session.scalars(sa.select(Job).where(Job.sweep_id == sweep_id)).all()
    ran = [j for j in jobs if j.started_at is not None]
    assert len(ran) == 2
    assert all(0 < j.steps_done < 100_000 for j in ran)
    assert all(j.attempts == 0 and j.steps_done == 0 for j in jobs if j not in ran)


def test_cli_sweep_shows_progress_then_leaderboard_and_factors(
    live_url: str, tmp_path: Path
) -> None:
    # Given a sweep file written as a user would, floats in 1e-3 form.
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "name: cli-sweep\n"
        "base: {stage: optim, init: normal, iterations: 30, N: 8, D_in: 16, H: 8, D_out: 2}\n"
        "grid:\n"
        "  optimizer: [sgd, adam]\n"
        "  lr: [1e-3, 1e-2]\n"
        "seeds: [1, 2]\n"
    )
    # When `trainq sweep` runs against the live server.
    runner = CliRunner()
    result = runner.invoke(
        main, ["sweep", str(path), "--poll", "0.2", "--top", "5"], env={"TRAINQ_URL": live_url}
    )
    # Then it followed the sweep to the end and printed the leaderboard and the factor table.
    assert result.exit_code == 0, result.output
    out = result.output
    assert "8 job(s), varying optimizer, lr, seed" in out
    sweep_id = out.split()[1]
    assert f"sweep {sweep_id}" in out.splitlines()[1]  # the progress bar's label
    assert f"sweep {sweep_id} 'cli-sweep': 8/8 finished" in out
    assert "leaderboard (top 5 of 8):" in out
    header = next(line for line in out.splitlines() if line.startswith("rank"))
    assert header.split() == [
        "rank",
        "id",
        "status",
        "optimizer",
        "lr",
        "seed",
        "final_loss",
        "min_loss",
        "min_loss_step",
    ]
    assert "factor" in out
    assert "best: optimizer=sgd lr=0.001" in out
    assert "best lr for sgd/normal" in out
    listed = runner.invoke(main, ["sweeps"], env={"TRAINQ_URL": live_url})
    assert listed.exit_code == 0
    assert "cli-sweep" in listed.output
    detached = runner.invoke(main, ["sweep", str(path), "--detach"], env={"TRAINQ_URL": live_url})
    assert detached.exit_code == 0
    assert "leaderboard" not in detached.output


def test_fused_sweep_matches_each_job_trained_alone(stack: Stack) -> None:
    from worker.training import TrainSpec, train_to_list

    body = {**GRID, "name": "fused", "fused": True}
    sweep_id = stack.submit_sweep(body)
    counts = wait_for_sweep(stack, sweep_id)["counts"]
    assert counts["succeeded"] + counts["diverged"] == 12
    with stack.sessions() as session:
        jobs = session.scalars(sa.select(Job).where(Job.sweep_id == sweep_id)).all()
        fields = {job.id: (job.status, job_spec_of(job)) for job in jobs}
    for job_id, (status, spec) in fields.items():
        stored = stack.losses(job_id)
        alone = train_to_list(TrainSpec.from_fields(spec))
        # Same outcome as the job trained alone, at the same step, with the same history.
        assert status == ("diverged" if alone.diverged_at is not None else "succeeded")
        assert stored["steps"] == list(range(len(alone.losses)))
        for got, want in zip(stored["losses"], alone.losses, strict=True):
            assert abs(got - want) <= 1e-4 * abs(want), (job_id, spec)


def job_spec_of(job: Job) -> dict[str, Any]:
    """A stored job's training fields."""
    from service.jobs import job_spec

    return job_spec(job)
