"""/factors' interactions, the best-so-far curve as JSON and as pictures, over stored rows."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from service.models import Sweep
from tests.service.api.test_api_results import decoded_png
from tests.service.results_data import add_job, add_sweep, decay


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
