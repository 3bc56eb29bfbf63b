"""Sweep results with pruned jobs: the leaderboard's order, the trial counts, the factor rule."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from service.models import Job
from tests.service.api.test_api_sweeps import post

BASE = {"stage": "optim", "iterations": 10, "N": 4, "D_in": 8, "H": 4, "D_out": 2}
# Six jobs, lr fastest: (sgd, 1e-3), (sgd, 1e-2), (sgd, 1e-1), (adam, 1e-3), ...
GRID = {
    "name": "asha",
    "base": BASE,
    "grid": {"optimizer": ["sgd", "adam"], "lr": [1e-3, 1e-2, 1e-1]},
    "early_stop": {"rule": "asha", "grace": 4, "reduction": 2},
}
# status, final loss, rung, loss at the rung: the states the workers would have written.
ENDS = [
    ("succeeded", 2.0, None, None),
    ("succeeded", 1.0, None, None),
    ("pruned", 2.9, 4, 3.0),
    ("pruned", 4.0, 8, 5.0),  # worse there, but went on past more rivals
    ("pruned", 2.4, 4, 2.5),
    ("running", 0.5, None, None),
]


def ended_sweep(client: FlaskClient, session: so.Session) -> tuple[int, list[int]]:
    response = post(client, GRID)
    assert response.status_code == 201, response.get_json()
    sweep_id = response.get_json()["id"]
    ids = session.scalars(sa.select(Job.id).where(Job.sweep_id == sweep_id).order_by(Job.id))
    ids = list(ids)
    for job_id, (status, final, rung, at_rung) in zip(ids, ENDS, strict=True):
        session.execute(
            sa.update(Job)
            .where(Job.id == job_id)
            .values(status=status, final_loss=final, pruned_at=rung, pruned_loss=at_rung)
        )
    session.commit()
    return sweep_id, ids


def test_the_leaderboard_ranks_finished_then_pruned_by_rung_and_loss_there(
    client: FlaskClient, session: so.Session
) -> None:
    sweep_id, ids = ended_sweep(client, session)
    rows = client.get(f"/api/v1/sweeps/{sweep_id}/results").get_json()["results"]
    assert [row["id"] for row in rows] == [ids[1], ids[0], ids[3], ids[4], ids[2], ids[5]]
    assert [(row["pruned_at"], row["pruned_loss"]) for row in rows[2:5]] == [
        (8, 5.0),
        (4, 2.5),
        (4, 3.0),
    ]


def test_the_sweep_reports_its_trials_and_the_best_so_far(
    client: FlaskClient, session: so.Session
) -> None:
    sweep_id, ids = ended_sweep(client, session)
    sweep = client.get(f"/api/v1/sweeps/{sweep_id}").get_json()
    assert sweep["trials"] == {
        "wanted": 6,
        "asked": 6,
        "queued": 0,
        "running": 1,
        "finished": 5,
        "pruned": 3,
        "best": {"id": ids[1], "final_loss": 1.0, "config": {"optimizer": "sgd", "lr": 1e-2}},
    }
    assert not sweep["done"]


def test_factors_leave_pruned_jobs_out_and_count_them(
    client: FlaskClient, session: so.Session
) -> None:
    sweep_id, _ = ended_sweep(client, session)
    table = client.get(f"/api/v1/sweeps/{sweep_id}/factors").get_json()
    # By hand: only the two succeeded jobs count, log10 2 at lr 1e-3 and log10 1 at 1e-2.
    assert (table["used"], table["pruned"]) == (2, 3)
    assert table["excluded"] == {"pruned": 3, "running": 1}
    assert table["pruned_rule"].startswith("left out")
    sgd = table["factors"]["optimizer"]["levels"]
    assert list(sgd) == ["sgd"]
    assert sgd["sgd"]["mean"] == pytest.approx(math.log10(2) / 2)
    lr = table["factors"]["lr"]
    assert lr["order"] == ["0.001", "0.01"]
    assert lr["levels"]["0.001"]["mean"] == pytest.approx(math.log10(2))
    assert lr["levels"]["0.01"]["mean"] == pytest.approx(0.0)
    assert lr["share"] == pytest.approx(1.0)
    assert table["factors"]["optimizer"]["share"] == pytest.approx(0.0)


def test_numeric_levels_are_ordered_by_value(client: FlaskClient, session: so.Session) -> None:
    levels = [1e-4, 1e-3, 1e-5, 1e-6]
    body = {"name": "lr", "base": BASE, "grid": {"lr": levels}}
    sweep_id = post(client, body).get_json()["id"]
    for n, job_id in enumerate(session.scalars(sa.select(Job.id).where(Job.sweep_id == sweep_id))):
        job = session.get_one(Job, job_id)
        job.status, job.final_loss = "succeeded", float(n + 1)
    session.commit()
    table = client.get(f"/api/v1/sweeps/{sweep_id}/factors").get_json()
    # As text they would be 0.0001, 0.001, 1e-05, 1e-06.
    assert table["factors"]["lr"]["order"] == ["1e-06", "1e-05", "0.0001", "0.001"]
