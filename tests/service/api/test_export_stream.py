"""A streamed export reads page by page, each in its own short transaction."""

from __future__ import annotations

import csv
import io
import sqlite3

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from service.models import Job
from tests.service.results_data import add_job, add_sweep, decay


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
