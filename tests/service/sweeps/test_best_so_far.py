"""The best-so-far curve as arithmetic, against a small history written out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.sweeps.best_so_far import best_so_far

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(job_id: int, status: str, steps: int, loss: float | None, minute: int | None) -> dict:
    finished = None if minute is None else T0 + timedelta(minutes=minute)
    return {
        "id": job_id,
        "status": status,
        "steps_done": steps,
        "final_loss": loss,
        "finished_at": finished,
    }


def test_best_so_far_by_hand_with_pruned_diverged_and_running_jobs() -> None:
    # Given jobs listed out of finishing order; ids and minutes chosen so the two orders differ.
    rows = [
        row(1, "succeeded", 100, 0.5, 2),
        row(2, "pruned", 20, 0.3, 3),  # its last loss is lower, but it is no final loss
        row(3, "diverged", 40, None, 4),
        row(4, "succeeded", 100, 0.2, 5),
        row(5, "running", 50, None, None),  # not ended: spends nothing yet
        row(6, "succeeded", 100, 0.4, 6),
        row(7, "cancelled", 10, None, 1),
    ]
    points = best_so_far(rows)
    # Then, in finishing order (7, 1, 2, 3, 4, 6), the steps add up and only succeeded improve:
    #   job 7  cancelled  10 ->  10  best -
    #   job 1  succeeded 100 -> 110  best 0.5 (job 1)
    #   job 2  pruned     20 -> 130  best 0.5
    #   job 3  diverged   40 -> 170  best 0.5
    #   job 4  succeeded 100 -> 270  best 0.2 (job 4)
    #   job 6  succeeded 100 -> 370  best 0.2 (0.4 is worse)
    assert [(p["job_id"], p["spent"], p["best"], p["best_job_id"]) for p in points] == [
        (7, 10, None, None),
        (1, 110, 0.5, 1),
        (2, 130, 0.5, 1),
        (3, 170, 0.5, 1),
        (4, 270, 0.2, 4),
        (6, 370, 0.2, 4),
    ]
    assert [p["final_loss"] for p in points] == [None, 0.5, None, None, 0.2, 0.4]
    assert [p["steps"] for p in points] == [10, 100, 20, 40, 100, 100]


def test_ties_in_finishing_time_go_by_id() -> None:
    rows = [row(9, "succeeded", 5, 1.0, 1), row(8, "succeeded", 5, 2.0, 1)]
    assert [p["job_id"] for p in best_so_far(rows)] == [8, 9]
    assert best_so_far([]) == []
