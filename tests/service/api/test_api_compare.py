"""Compare, its plots and one job's plot against values computed here from the stored rows."""

from __future__ import annotations

import csv
import io
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import sqlalchemy.orm as so
from flask.testing import FlaskClient
from PIL import Image

from tests.service.results_data import (
    add_job,
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


def test_a_compare_past_the_cell_cap_reads_a_stride_yet_summarizes_every_step(
    client: FlaskClient, session: so.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.api import curve_reads

    monkeypatch.setattr(curve_reads, "MAX_CELLS", 300)
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
