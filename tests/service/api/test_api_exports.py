"""Job and sweep exports against the stored rows; a streamed export reads page by page, each
in its own short transaction."""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from service.models import Job
from tests.service.api.test_api_compare import three_jobs
from tests.service.results_data import add_job, add_sweep, decay, expected_summary
from tests.support.loss_chunks import stored_history


def read_transactions_open(database_url: str, engine: sa.Engine) -> int:
    """Transactions some other connection holds open right now (a snapshot on SQLite)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # A reader's snapshot keeps a truncating checkpoint from finishing (busy = 1).
        with sqlite3.connect(url.database or "", timeout=0) as connection:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return int(busy)
    with engine.connect() as connection:
        return connection.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        )


def test_a_paused_export_holds_no_transaction_between_pages(
    app: Flask, client: FlaskClient, session: so.Session, database_url: str
) -> None:
    from service.results import export

    engine = app.extensions["trainq.engine"]
    sweep = add_sweep(session, ["lr"])
    ids = [
        add_job(client, session, decay(1.0, 0.9, 20), sweep_id=sweep, lr=float(k + 1))
        for k in range(5)
    ]
    old_batch, export.BATCH = export.BATCH, 2
    try:
        # Given a download started and paused after its first rows
        response = client.get(
            f"/api/v1/sweeps/{sweep}/export?format=csv&table=jobs", buffered=False
        )
        chunks = response.iter_encoded()
        received = [next(chunks), next(chunks)]
        # When a writer changes the database meanwhile
        session.execute(sa.update(Job).where(Job.id == ids[-1]).values(name="renamed"))
        session.commit()
        # Then no transaction of the download stays open while it waits for the client
        assert read_transactions_open(database_url, engine) == 0
        received += list(chunks)
        response.close()
    finally:
        export.BATCH = old_batch
    rows = list(csv.DictReader(io.StringIO(b"".join(received).decode())))
    # Every job once, in id order; the page read after the write sees it.
    assert [int(r["id"]) for r in rows] == ids
    assert rows[-1]["name"] == "renamed"


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


def test_the_jobs_csv_has_every_api_field_under_the_api_s_names(
    client: FlaskClient, session: so.Session
) -> None:
    from service.api.schemas import JobOut

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
