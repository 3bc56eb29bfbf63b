"""Compare, plots and exports against values computed here from the stored rows."""

from __future__ import annotations

import csv
import io
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask.testing import FlaskClient
from PIL import Image

from tests.service.results_data import (
    add_job,
    add_sweep,
    decay,
    expected_pair,
    expected_summary,
)
from tests.support.loss_chunks import stored_history


def three_jobs(client: FlaskClient, session: so.Session) -> list[int]:
    """Adam falling fast, SGD slowly, and RMSprop that blows up at step 40."""
    exploding = [*decay(100.0, 0.9, 40), math.inf]
    return [
        add_job(client, session, decay(100.0, 0.95, 300, 0.1), optimizer="adam", lr=1e-3),
        add_job(client, session, decay(120.0, 0.99, 250), optimizer="sgd", lr=1e-3),
        add_job(client, session, exploding, optimizer="rmsprop", lr=1e-3, status="diverged"),
    ]


def test_compare_summaries_pairs_and_axis(client: FlaskClient, session: so.Session) -> None:
    ids = three_jobs(client, session)
    response = client.get(f"/api/v1/compare?jobs={','.join(map(str, ids))}&points=60")
    assert response.status_code == 200
    body = response.get_json()
    histories = {i: stored_history(session, i) for i in ids}

    for summary in body["summaries"]:
        want = expected_summary(*histories[summary["job_id"]])
        for key, value in want.items():
            got = summary[key]
            assert got == pytest.approx(value, rel=1e-12) if value is not None else got is None, key
    by_id = {s["job_id"]: s for s in body["summaries"]}
    assert by_id[ids[0]]["step_below_1pct"] is not None
    assert by_id[ids[1]]["step_below_0_1pct"] is None  # 0.99**249 never reaches 0.1 %
    assert by_id[ids[2]]["final"] is None

    assert body["pairs_total"] == 3
    assert body["next_pairs_offset"] is None
    for pair in body["pairs"]:
        value, step, common = expected_pair(histories[pair["a"]], histories[pair["b"]])
        assert pair["max_rel_diff"] == pytest.approx(value, rel=1e-12)
        assert pair["step"] == step
        assert pair["common_steps"] == common

    steps = body["steps"]
    assert len(steps) == 60 == body["points"]
    assert steps[0] == 0
    assert steps[-1] == 299
    assert steps == sorted(set(steps))
    for history in body["histories"]:
        own_steps, own = histories[history["job_id"]]
        lookup = dict(zip(own_steps, own, strict=True))
        for step, value in zip(steps, history["losses"], strict=True):
            stored = lookup.get(step)
            if stored is None or not math.isfinite(stored):
                assert value is None
            else:
                assert value == stored


def test_compare_pages_pairs_and_keeps_the_dip(client: FlaskClient, session: so.Session) -> None:
    curve = decay(10.0, 0.98, 400)
    curve[237] = 1e-6  # a one-step dip that a shape-keeping downsample must not drop
    ids = [add_job(client, session, curve)] + [
        add_job(client, session, decay(10.0, 0.97 + k / 1000, 400)) for k in range(4)
    ]
    query = ",".join(map(str, ids))
    whole = client.get(f"/api/v1/compare?jobs={query}&points=40").get_json()
    assert 237 in whole["steps"]
    pages, offset = [], 0
    while offset is not None:
        page = client.get(
            f"/api/v1/compare?jobs={query}&points=40&pairs_limit=3&pairs_offset={offset}"
        ).get_json()
        pages += page["pairs"]
        offset = page["next_pairs_offset"]
    assert [(p["a"], p["b"]) for p in pages] == [
        (a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]
    ]
    assert pages == whole["pairs"]


def test_compare_errors_name_the_parameter(client: FlaskClient, session: so.Session) -> None:
    job = add_job(client, session, decay(1.0, 0.9, 5))
    missing = client.get(f"/api/v1/compare?jobs={job},9991,9992")
    assert missing.status_code == 404
    error = missing.get_json()["error"]
    assert error["field"] == "jobs"
    assert error["missing"] == [9991, 9992]
    assert "9991" in error["message"]
    too_many = client.get("/api/v1/compare?jobs=" + ",".join(str(i) for i in range(1, 1002)))
    assert too_many.status_code == 422
    assert too_many.get_json()["error"]["field"] == "jobs"
    for query, field in (
        ("jobs=", "jobs"),
        ("jobs=a,b", "jobs"),
        (f"jobs={job}&points=-1", "points"),
    ):
        response = client.get(f"/api/v1/compare?{query}")
        assert response.status_code == 422
        assert response.get_json()["error"]["field"] == field


def test_compare_csv_parses_back(client: FlaskClient, session: so.Session) -> None:
    ids = three_jobs(client, session)
    query = ",".join(map(str, ids))
    summary = client.get(f"/api/v1/compare?jobs={query}&format=csv")
    assert summary.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(summary.get_data(as_text=True))))
    assert [int(r["job_id"]) for r in rows] == ids
    for row in rows:
        want = expected_summary(*stored_history(session, int(row["job_id"])))
        assert float(row["auc_log10"]) == pytest.approx(want["auc_log10"], rel=1e-12)
        assert float(row["min"]) == want["min"]
    histories = client.get(f"/api/v1/compare?jobs={query}&format=csv&table=histories&points=0")
    table = list(csv.reader(io.StringIO(histories.get_data(as_text=True))))
    assert table[0] == ["step"] + [f"job_{i}" for i in ids]
    assert len(table) == 1 + 300
    steps, losses = stored_history(session, ids[1])
    assert [float(r[2]) for r in table[1 : 1 + len(steps)]] == losses
    assert table[-1][2] == ""  # the SGD job stopped at step 249


def decoded_png(data: bytes) -> np.ndarray:
    """Pixels of a PNG, after checking its signature."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image.convert("L"), dtype=np.float64)


def test_job_and_compare_plots(client: FlaskClient, session: so.Session) -> None:
    ids = three_jobs(client, session)
    one = client.get(f"/api/v1/jobs/{ids[0]}/plot.png?width=640&height=400")
    assert one.status_code == 200
    assert one.mimetype == "image/png"
    pixels = decoded_png(one.data)
    assert pixels.shape == (400, 640)
    assert pixels.var() > 100
    query = ",".join(map(str, ids))
    both = client.get(f"/api/v1/compare/plot.png?jobs={query}")
    assert decoded_png(both.data).shape == (550, 900)
    svg = client.get(f"/api/v1/compare/plot.svg?jobs={query}")
    assert svg.mimetype == "image/svg+xml"
    text = svg.get_data(as_text=True)
    assert ET.fromstring(text).tag.endswith("svg")
    # The legend names only what differs (the optimizer), and the title names the jobs.
    assert "optimizer=adam" in text
    assert "optimizer=rmsprop" in text
    assert "lr=" not in text
    assert f"#{ids[0]}" in text
    for url, field in (
        (f"/api/v1/jobs/{ids[0]}/plot.png?width=99999", "width"),
        ("/api/v1/compare/plot.png?jobs=", "jobs"),
    ):
        response = client.get(url)
        assert response.status_code == 422
        assert response.get_json()["error"]["field"] == field
    assert client.get("/api/v1/jobs/987654/plot.png").status_code == 404
    queued = add_job(client, session, None, status="queued", duration=None)
    empty = client.get(f"/api/v1/jobs/{queued}/plot.png")
    assert empty.status_code == 200
    assert decoded_png(empty.data).shape == (500, 800)


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


def test_job_export_json_and_csv(client: FlaskClient, session: so.Session) -> None:
    ids = three_jobs(client, session)
    body = json.loads(client.get(f"/api/v1/jobs/{ids[2]}/export").data)
    (job,) = body["jobs"]
    steps, losses = stored_history(session, ids[2])
    assert job["id"] == ids[2]
    assert job["optimizer"] == "rmsprop"
    assert job["history"]["steps"] == steps
    assert job["history"]["losses"] == [*losses[:-1], None]
    assert job["summary"]["auc_log10"] == pytest.approx(
        expected_summary(steps, losses)["auc_log10"]
    )
    response = client.get(f"/api/v1/jobs/{ids[0]}/export?format=csv")
    assert response.headers["Content-Disposition"].endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(int(r["step"]), float(r["loss"])) for r in rows] == list(
        zip(*stored_history(session, ids[0]), strict=True)
    )
    assert client.get(f"/api/v1/jobs/{ids[0]}/export?format=xml").status_code == 422
    assert client.get("/api/v1/jobs/5555/export").status_code == 404


def test_sweep_export_streams_every_job(client: FlaskClient, session: so.Session) -> None:
    from service.results import export

    sweep = add_sweep(session, ["lr"])
    curves = {}
    for k in range(5):
        job_id = add_job(
            client, session, decay(10.0, 0.9 + k / 100, 30 + k), sweep_id=sweep, lr=10.0**-k
        )
        curves[job_id] = stored_history(session, job_id)
    outside = add_job(client, session, decay(1.0, 0.5, 3))
    old_batch, export.BATCH = export.BATCH, 2  # several history queries while streaming
    try:
        body = json.loads(client.get(f"/api/v1/sweeps/{sweep}/export").data)
        long = client.get(f"/api/v1/sweeps/{sweep}/export?format=csv").get_data(as_text=True)
        table = client.get(f"/api/v1/sweeps/{sweep}/export?format=csv&table=jobs")
    finally:
        export.BATCH = old_batch
    assert body["sweep"]["id"] == sweep
    assert body["sweep"]["varied"] == ["lr"]
    assert [j["id"] for j in body["jobs"]] == sorted(curves)
    for job in body["jobs"]:
        assert (job["history"]["steps"], job["history"]["losses"]) == curves[job["id"]]
    rows = list(csv.DictReader(io.StringIO(long)))
    assert {int(r["job_id"]) for r in rows} == set(curves)
    assert outside not in curves
    assert len(rows) == sum(len(s) for s, _ in curves.values())
    for r in rows:
        steps, losses = curves[int(r["job_id"])]
        assert losses[steps.index(int(r["step"]))] == float(r["loss"])
    jobs = list(csv.DictReader(io.StringIO(table.get_data(as_text=True))))
    for r in jobs:
        want = expected_summary(*curves[int(r["id"])])
        assert float(r["final_loss"]) == want["final"]
        assert float(r["lr"]) > 0
    assert client.get("/api/v1/sweeps/777/export").status_code == 404


def test_exports_carry_each_jobs_stack_size(client: FlaskClient, session: so.Session) -> None:
    from service.models import Job

    sweep = add_sweep(session, ["lr"])
    ids = [add_job(client, session, decay(1.0, 0.9, 5), sweep_id=sweep, lr=lr) for lr in (1, 2)]
    never_run = add_job(client, session, decay(1.0, 0.9, 5), sweep_id=sweep, lr=3.0)
    for job_id, size in zip(ids, (1, 2), strict=True):
        session.get_one(Job, job_id).stack_size = size
    session.commit()
    body = json.loads(client.get(f"/api/v1/sweeps/{sweep}/export").data)
    assert {j["id"]: j["stack_size"] for j in body["jobs"]} == {
        ids[0]: 1, ids[1]: 2, never_run: None,
    }  # fmt: skip
    table = client.get(f"/api/v1/sweeps/{sweep}/export?format=csv&table=jobs")
    rows = list(csv.DictReader(io.StringIO(table.get_data(as_text=True))))
    assert {int(r["id"]): r["stack_size"] for r in rows} == {
        ids[0]: "1", ids[1]: "2", never_run: "",
    }  # fmt: skip
    assert (
        json.loads(client.get(f"/api/v1/jobs/{ids[1]}/export").data)["jobs"][0]["stack_size"] == 2
    )


@pytest.mark.parametrize("name", ['=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)"])
def test_csv_exports_write_a_formula_name_as_text(
    client: FlaskClient, session: so.Session, name: str
) -> None:
    sweep = add_sweep(session, ["lr"])
    job_id = add_job(client, session, decay(1.0, 0.9, 5), sweep_id=sweep, name=name)
    for url in (
        f"/api/v1/sweeps/{sweep}/export?format=csv&table=jobs",
        f"/api/v1/jobs/{job_id}/export?format=csv&table=jobs",
    ):
        rows = list(csv.DictReader(io.StringIO(client.get(url).get_data(as_text=True))))
        assert [r["name"] for r in rows] == ["'" + name]
        # Numbers stay numbers: a negative one is not text to escape.
        assert float(rows[0]["lr"]) > 0


def test_spreadsheet_cell_escapes_only_a_leading_formula_character() -> None:
    from service.results.export import csv_cell, spreadsheet_cell

    assert [spreadsheet_cell(t) for t in ("=1", "\tx", "\rx", "a=1", "", "adam")] == [
        "'=1", "'\tx", "'\rx", "a=1", "", "adam",
    ]  # fmt: skip
    assert (csv_cell(-1.5), csv_cell(None), csv_cell(-3)) == ("-1.5", "", -3)


def test_a_compare_past_the_cell_cap_reads_a_stride_yet_summarizes_every_step(
    client: FlaskClient, session: so.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.api import results

    monkeypatch.setattr(results, "MAX_CELLS", 300)
    ids = [add_job(client, session, decay(100.0, 0.97, 300, 0.2)) for _ in range(2)]
    ids.append(add_job(client, session, decay(50.0, 0.99, 200)))
    jobs = ",".join(map(str, ids))
    # Every step of 3 x 300 is over the cap: refused, naming points, before any history is read
    every = client.get(f"/api/v1/compare?jobs={jobs}&points=0")
    assert every.status_code == 422
    assert every.get_json()["error"]["field"] == "points"
    body = client.get(f"/api/v1/compare?jobs={jobs}&points=20&pairs_limit=0").get_json()
    assert body["points"] == 20
    assert (body["steps"][0], body["steps"][-1]) == (0, 299)
    assert (body["pairs"], body["pairs_total"]) == ([], 3)
    # The summaries still come from every stored step, not the stride the grid was read at.
    for summary, job_id in zip(body["summaries"], ids, strict=True):
        want = expected_summary(*stored_history(session, job_id))
        assert summary["min_step"] == want["min_step"]
        assert summary["auc_log10"] == pytest.approx(want["auc_log10"])
    # The pairs of a strided grid compare the steps read: two equal curves never differ.
    pairs = client.get(f"/api/v1/compare?jobs={jobs}&points=20").get_json()["pairs"]
    assert pairs[0]["max_rel_diff"] == 0.0
    assert 0 < pairs[0]["common_steps"] <= 100


def test_a_sweep_plot_draws_a_sample_of_a_large_sweep(
    client: FlaskClient, session: so.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.api import results

    monkeypatch.setattr(results, "MAX_CURVES", 3)
    sweep = add_sweep(session, ["lr"])
    for k in range(7):
        add_job(client, session, decay(10.0, 0.9, 50), sweep_id=sweep, lr=10.0**-k)
    response = client.get(f"/api/v1/sweeps/{sweep}/plot.png")
    assert response.status_code == 200
    assert decoded_png(response.data).var() > 100
    wide = client.get(f"/api/v1/sweeps/{sweep}/plot.png?points={results.MAX_POINTS}")
    assert wide.status_code == 200
    monkeypatch.setattr(results, "MAX_CELLS", 100)
    refused = client.get(f"/api/v1/sweeps/{sweep}/plot.png?points=40")
    assert refused.status_code == 422
    assert refused.get_json()["error"]["field"] == "points"


def test_the_jobs_csv_has_every_api_field_under_the_api_s_names(
    client: FlaskClient, session: so.Session
) -> None:
    from service.api.schemas import JobOut
    from service.models import Job

    # Given a sweep with a finished, a diverged and a pruned job.
    sweep = add_sweep(session, ["lr"])
    done = add_job(client, session, decay(10.0, 0.9, 20), sweep_id=sweep, lr=1e-3, tags=["a", "b"])
    exploded = add_job(
        client, session, [*decay(4.0, 1.5, 7), math.inf], status="diverged", sweep_id=sweep, lr=1.0
    )
    cut = add_job(client, session, decay(8.0, 0.99, 9), status="pruned", sweep_id=sweep, lr=1e-6)
    session.execute(
        sa.update(Job).where(Job.id == cut).values(pruned_at=8, pruned_loss=8.0 * 0.99**8)
    )
    session.commit()
    # When its jobs table is exported as CSV.
    text = client.get(f"/api/v1/sweeps/{sweep}/export?format=csv&table=jobs").get_data(as_text=True)
    reader = csv.DictReader(io.StringIO(text))
    rows = {int(r["id"]): r for r in reader}
    # Then the header is every field of the API's job, under its names, then the summary's
    # initial loss, thresholds and area.
    assert reader.fieldnames == [
        *JobOut.model_fields,
        "initial_loss",
        "step_below_1pct",
        "step_below_0_1pct",
        "auc_log10",
    ]
    api = {i: client.get(f"/api/v1/jobs/{i}").get_json() for i in (done, exploded, cut)}
    for job_id, row in rows.items():
        for field in ("final_loss", "min_loss"):
            assert (float(row[field]) if row[field] else None) == api[job_id][field]
    assert rows[done]["tags"] == "a,b"
    assert float(rows[done]["initial_loss"]) == 10.0
    assert rows[exploded]["diverged_at"] == "7"
    assert (rows[cut]["pruned_at"], float(rows[cut]["pruned_loss"])) == ("8", 8.0 * 0.99**8)
    # And the JSON export carries every API field too.
    body = json.loads(client.get(f"/api/v1/sweeps/{sweep}/export").data)
    for job in body["jobs"]:
        assert set(JobOut.model_fields) <= set(job)
        assert {k: job[k] for k in ("diverged_at", "pruned_at")} == {
            k: api[job["id"]][k] for k in ("diverged_at", "pruned_at")
        }
