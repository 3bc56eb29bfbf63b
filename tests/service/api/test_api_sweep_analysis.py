"""A sweep's analysis over stored rows: the leaderboard, /factors (against a hand computation,
its interactions), the best-so-far curve as JSON and as pictures, the sweep's plot."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from service.models import Job, Sweep
from tests.service.api.test_api_compare import decoded_png
from tests.service.api.test_api_sweeps import GRID, post
from tests.service.results_data import add_job, add_sweep, decay
from tests.support.factors_by_hand import assert_factors_match
from worker.attempts.claims import claim_job
from worker.attempts.record import finish_job, record_chunk


def test_factors_report_the_optimizer_x_lr_interaction(
    client: FlaskClient, session: so.Session
) -> None:
    # sgd best at the high lr, adam at the low one: lr alone explains nothing, together a lot.
    sweep = add_sweep(session, ["optimizer", "lr"])
    for optimizer, lr, final in (
        ("sgd", 1e-3, 10.0),
        ("sgd", 1e-1, 0.1),
        ("adam", 1e-3, 0.1),
        ("adam", 1e-1, 10.0),
    ):
        add_job(client, session, [5.0, final], sweep_id=sweep, optimizer=optimizer, lr=lr)
    table = client.get(f"/api/v1/sweeps/{sweep}/factors").get_json()
    # ys: sgd 1, -1; adam -1, 1. Grand mean 0, SS_total 4, both main effects 0, SS_cells 4.
    assert table["factors"]["optimizer"]["share"] == pytest.approx(0.0)
    assert table["factors"]["lr"]["share"] == pytest.approx(0.0)
    (pair,) = table["interactions"]
    assert pair["name"] == "optimizer x lr"
    assert pair["share"] == pytest.approx(1.0)
    assert pair["columns"] == ["0.001", "0.1"]
    assert [(c["row"], c["column"], c["mean"]) for c in pair["cells"]] == [
        ("adam", "0.001", pytest.approx(-1.0)),
        ("adam", "0.1", pytest.approx(1.0)),
        ("sgd", "0.001", pytest.approx(1.0)),
        ("sgd", "0.1", pytest.approx(-1.0)),
    ]


def test_best_so_far_json_and_plots(client: FlaskClient, session: so.Session) -> None:
    # Given jobs finishing (duration = minutes after T0) in the order 1, 2, 3, 4; one running.
    sweep = add_sweep(session, ["lr"])
    first = add_job(client, session, decay(4.0, 0.9, 30), sweep_id=sweep, lr=1e-3, duration=1)
    # Pruned with a lower last loss than anyone's final: spent, but never the best.
    pruned = add_job(
        client, session, decay(1.0, 0.5, 12), status="pruned", sweep_id=sweep, lr=1e-2, duration=2
    )
    diverged = [*decay(4.0, 1.5, 7), math.inf]
    add_job(client, session, diverged, status="diverged", sweep_id=sweep, lr=1.0, duration=3)
    best = add_job(client, session, decay(2.0, 0.9, 30), sweep_id=sweep, lr=1e-4, duration=4)
    add_job(client, session, decay(2.0, 0.9, 5), status="running", sweep_id=sweep, duration=None)
    body = client.get(f"/api/v1/sweeps/{sweep}/best-so-far").get_json()
    # By hand: steps 30, 12, 8, 30 -> spent 30, 42, 50, 80; best 4*0.9**29 until job 4 gives
    # 2*0.9**29.
    first_final, best_final = 4.0 * 0.9**29, 2.0 * 0.9**29
    assert [(p["spent"], p["status"]) for p in body["points"]] == [
        (30, "succeeded"),
        (42, "pruned"),
        (50, "diverged"),
        (80, "succeeded"),
    ]
    assert [p["best"] for p in body["points"]] == [
        pytest.approx(first_final),
        pytest.approx(first_final),
        pytest.approx(first_final),
        pytest.approx(best_final),
    ]
    assert body["points"][1]["job_id"] == pruned
    assert body["points"][1]["final_loss"] is None
    assert body["total_steps"] == 80
    assert (body["best"]["job_id"], body["best"]["spent"]) == (best, 80)
    assert body["points"][0]["best_job_id"] == first
    png = client.get(f"/api/v1/sweeps/{sweep}/best-so-far.png?width=640&height=360")
    assert png.status_code == 200
    assert decoded_png(png.data).shape == (360, 640)
    svg = client.get(f"/api/v1/sweeps/{sweep}/best-so-far.svg")
    assert svg.mimetype == "image/svg+xml"
    assert ET.fromstring(svg.data).tag.endswith("svg")
    assert client.get("/api/v1/sweeps/4242/best-so-far").status_code == 404
    assert client.get("/api/v1/sweeps/4242/best-so-far.png").status_code == 404
    assert client.get(f"/api/v1/sweeps/{sweep}/best-so-far.png?width=1").status_code == 422


def test_sweep_plot_with_pruned_jobs_rungs_and_heatmap(
    client: FlaskClient, session: so.Session
) -> None:
    stored = {"name": "s", "early_stop": {"rule": "asha", "grace": 4, "reduction": 2}}
    sweep = Sweep(name="s", seed=1, request=stored, varied=["optimizer", "lr"], job_count=0)
    session.add(sweep)
    session.commit()
    for optimizer in ("sgd", "adam"):
        for lr in (1e-3, 1e-2):
            status = "pruned" if (optimizer, lr) == ("sgd", 1e-3) else "succeeded"
            steps = 9 if status == "pruned" else 40
            add_job(
                client,
                session,
                decay(5.0, 0.9, steps),
                status=status,
                sweep_id=sweep.id,
                optimizer=optimizer,
                lr=lr,
                iterations=40,
            )
    response = client.get(f"/api/v1/sweeps/{sweep.id}/plot.png")
    assert response.status_code == 200
    # Three panels by default when the heatmap is drawn.
    assert decoded_png(response.data).shape == (550, 1500)


def play_worker(session: so.Session, job_id: int, losses: list[float], status: str) -> None:
    """Record a job's history and outcome with the worker's own functions."""
    claim, _ = claim_job(session, job_id, "w@host", 60, max_attempts=3)
    assert claim is not None
    if losses:
        record_chunk(session, claim, 0, losses, 60)
    finish_job(session, claim, status, diverged_at=len(losses) if status == "diverged" else None)
    session.commit()


def finish_sweep(client: FlaskClient, session: so.Session) -> tuple[dict, list[int]]:
    """A 2 x 3 x 2 sweep whose jobs end as chosen: one diverged, one failed, the rest finite."""
    sweep = post(client, GRID).get_json()
    ids = list(
        session.scalars(sa.select(Job.id).where(Job.sweep_id == sweep["id"]).order_by(Job.id))
    )
    for i, job_id in enumerate(ids):
        if i == 10:
            play_worker(session, job_id, [50.0, 1e30], "diverged")
        elif i == 11:
            play_worker(session, job_id, [], "failed")
        else:
            start = 100.0 + i
            play_worker(session, job_id, [start, start / (i + 2), start / (3 * i + 4)], "succeeded")
    return sweep, ids


def test_results_are_a_sortable_leaderboard(client: FlaskClient, session: so.Session) -> None:
    sweep, ids = finish_sweep(client, session)
    url = f"/api/v1/sweeps/{sweep['id']}/results"
    board = client.get(url).get_json()
    rows = board["results"]
    assert board["total"] == 12
    assert len(rows) == 12
    finite = [r for r in rows if r["status"] == "succeeded"]
    assert [r["final_loss"] for r in finite] == sorted(r["final_loss"] for r in finite)
    assert [r["status"] for r in rows[-2:]] == ["diverged", "failed"]
    first = rows[0]
    assert set(first) >= {"id", "status", "final_loss", "min_loss", "min_loss_step", "steps_done"}
    assert {"optimizer", "lr", "seed"} <= set(first)
    job = session.get(Job, first["id"])
    assert (first["optimizer"], first["lr"], first["seed"]) == (job.optimizer, job.lr, job.seed)
    assert first["min_loss_step"] == 2
    assert first["steps_done"] == 3
    worst_first = client.get(url, query_string={"sort": "-final_loss"}).get_json()["results"]
    assert [r["final_loss"] for r in worst_first[:10]] == sorted(
        (r["final_loss"] for r in finite), reverse=True
    )
    by_id = client.get(url, query_string={"sort": "id", "limit": 5, "offset": 5}).get_json()
    assert [r["id"] for r in by_id["results"]] == ids[5:10]
    assert by_id["next_offset"] == 10
    by_min = client.get(url, query_string={"sort": "min_loss"}).get_json()["results"]
    assert [r["min_loss"] for r in by_min[:10]] == sorted(r["min_loss"] for r in finite)
    only = client.get(url, query_string={"status": "diverged"}).get_json()
    assert only["total"] == 1
    assert only["results"][0]["id"] == ids[10]
    bad = client.get(url, query_string={"sort": "colour"})
    assert bad.status_code == 422
    assert bad.get_json()["error"]["field"] == "sort"


def test_factors_match_a_hand_computation_from_the_stored_histories(
    client: FlaskClient, session: so.Session
) -> None:
    # Given a finished sweep: ten finite runs, one diverged, one failed.
    sweep, _ = finish_sweep(client, session)
    # When the factor table is read.
    table = client.get(f"/api/v1/sweeps/{sweep['id']}/factors").get_json()
    # Then it agrees with sums over the last stored loss of each job, done by hand.
    assert table["excluded"] == {"failed": 1}
    assert table["diverged"] == 1
    assert_factors_match(session, sweep["id"], table)


def test_sweep_plot_and_factor_panel(client: FlaskClient, session: so.Session) -> None:
    sweep = add_sweep(session, ["optimizer", "lr"])
    for optimizer, rate in (("adam", 0.9), ("sgd", 0.99)):
        for lr in (1e-3, 1e-2):
            add_job(
                client, session, decay(50.0, rate, 100), sweep_id=sweep, optimizer=optimizer, lr=lr
            )
    response = client.get(f"/api/v1/sweeps/{sweep}/plot.png?by=lr&width=900&height=400")
    assert response.status_code == 200
    pixels = decoded_png(response.data)
    assert pixels.shape == (400, 900)
    assert pixels.var() > 100
    assert client.get(f"/api/v1/sweeps/{sweep}/plot.png?by=colour").status_code == 422
    assert client.get("/api/v1/sweeps/4242/plot.png").status_code == 404


def test_level_statistics_count_diverged_as_worst() -> None:
    from service.results.sweep_plots import level_statistics

    jobs = [
        {"status": "succeeded", "final_loss": 1e-2, "optimizer": "adam"},
        {"status": "succeeded", "final_loss": 1e-4, "optimizer": "adam"},
        {"status": "succeeded", "final_loss": 1e1, "optimizer": "sgd"},
        {"status": "diverged", "final_loss": None, "optimizer": "sgd"},
        {"status": "queued", "final_loss": None, "optimizer": "sgd"},
    ]
    # The diverged sgd job scores one decade above the worst finite outcome (log10 1e1 = 1),
    # as in /factors; the queued one is left out. The spread is /factors' own sample std:
    # adam -2, -4 -> sqrt((1 + 1) / 1); sgd 1, 2 -> sqrt((0.25 + 0.25) / 1).
    assert level_statistics(jobs, "optimizer") == [
        ("adam", pytest.approx(-3.0), pytest.approx(math.sqrt(2)), 2),
        ("sgd", pytest.approx(1.5), pytest.approx(math.sqrt(0.5)), 2),
    ]


def test_a_sweep_plot_draws_a_sample_of_a_large_sweep(
    client: FlaskClient, session: so.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.api import curve_reads, sweep_analysis

    monkeypatch.setattr(sweep_analysis, "MAX_CURVES", 3)
    sweep = add_sweep(session, ["lr"])
    for k in range(7):
        add_job(client, session, decay(10.0, 0.9, 50), sweep_id=sweep, lr=10.0**-k)
    response = client.get(f"/api/v1/sweeps/{sweep}/plot.png")
    assert response.status_code == 200
    assert decoded_png(response.data).var() > 100
    wide = client.get(f"/api/v1/sweeps/{sweep}/plot.png?points={curve_reads.MAX_POINTS}")
    assert wide.status_code == 200
    monkeypatch.setattr(curve_reads, "MAX_CELLS", 100)
    refused = client.get(f"/api/v1/sweeps/{sweep}/plot.png?points=40")
    assert refused.status_code == 422
    assert refused.get_json()["error"]["field"] == "points"
