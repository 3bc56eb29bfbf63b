"""Migrations: one head, and an empty database upgrades to exactly the models' schema."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from types import ModuleType
from typing import NamedTuple

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.migrate import ROOT, alembic_config, heads, upgrade
from service.models import Base, LossChunk
from tests.conftest import BACKEND_PARAMS, DatabaseFactory
from tests.support.loss_chunks import stored_rows


class Blank(NamedTuple):
    """A database's URL (for Alembic) and an engine on it (for the test's own reads)."""

    url: str
    engine: sa.Engine


@pytest.fixture(params=BACKEND_PARAMS)
def blank(request: pytest.FixtureRequest, databases: DatabaseFactory) -> Iterator[Blank]:
    """A new database of each backend with no revision applied, and an engine on it."""
    url = databases.create(request.param, migrate=False)
    engine = sa.create_engine(url)
    yield Blank(url, engine)
    engine.dispose()


def test_single_head() -> None:
    assert len(heads()) == 1


def test_upgrade_empty_database_matches_models(blank: Blank) -> None:
    url, engine = blank
    upgrade(url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        version = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert diff == []
    assert version == heads()[0]
    assert set(sa.inspect(engine).get_table_names()) >= {
        "jobs",
        "loss_chunks",
        "sweeps",
        "job_tags",
    }


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_upgrade_is_idempotent(backend: str, databases: DatabaseFactory) -> None:
    url = databases.create(backend)
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_0006_packs_loss_rows_into_chunks_and_back(blank: Blank) -> None:
    url, engine = blank
    upgrade(url, "0005")
    # Two jobs: 600 steps (three chunks of at most 256) and one with a hole in its steps.
    rows = [(1, s, 1000.0 / (s + 1)) for s in range(600)]
    rows += [(2, s, float(-s)) for s in (0, 1, 2, 5, 6)]
    with engine.begin() as connection:
        insert_old_jobs(connection, [1, 2])
        connection.execute(
            sa.text("INSERT INTO losses (job_id, step, loss) VALUES (:j, :s, :v)"),
            [{"j": j, "s": s, "v": v} for j, s, v in rows],
        )
    # Pages of 7 rows (the migration reads 100,000 a query) pack the same chunks: a run of
    # steps goes on across a page boundary.
    revision = migration_module("0006_packed_loss_chunks.py")
    with engine.connect() as connection:
        pages = revision._pages(connection, revision.losses, "step", ["loss"], 7)
        small_pages = [
            (c["job_id"], c["first_step"], c["data"])
            for c in revision._packed(row for page in pages for row in page)
        ]
    upgrade(url)
    with so.Session(engine) as session:
        assert stored_rows(session) == rows
        assert (
            session.execute(
                sa.select(LossChunk.job_id, LossChunk.first_step, LossChunk.data).order_by(
                    LossChunk.job_id, LossChunk.first_step
                )
            ).all()
            == small_pages
        )
        spans = session.execute(
            sa.select(LossChunk.job_id, LossChunk.first_step, LossChunk.count).order_by(
                LossChunk.job_id, LossChunk.first_step
            )
        ).all()
    expected = [(1, 0, 256), (1, 256, 256), (1, 512, 88), (2, 0, 3), (2, 5, 2)]
    assert [tuple(s) for s in spans] == expected
    command.downgrade(alembic_config(url), "0005")
    with engine.connect() as connection:
        back = connection.execute(sa.text("SELECT job_id, step, loss FROM losses ORDER BY 1, 2"))
        assert [tuple(row) for row in back] == rows
        assert "loss_chunks" not in sa.inspect(connection).get_table_names()


def migration_module(filename: str) -> ModuleType:
    """A revision's module loaded from its file, to call its helpers outside Alembic."""
    spec = importlib.util.spec_from_file_location(
        "revision", ROOT / "migrations/versions" / filename
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_0007_adds_a_null_stack_size_and_drops_it_again(blank: Blank) -> None:
    url, engine = blank
    upgrade(url, "0006")
    with engine.begin() as connection:
        insert_old_jobs(connection, [1])
    # A job that ran before the column says nothing of its stack
    upgrade(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, stack_size FROM jobs")).all()
        assert [tuple(row) for row in rows] == [(1, None)]
    with engine.begin() as connection:
        connection.execute(
            sa.insert(LossChunk.__table__), {"job_id": 1, "first_step": 0, "count": 0, "data": b""}
        )
    # Going back drops the column and nothing else (on SQLite too, where a table copy would
    # cascade to the job's loss chunks)
    command.downgrade(alembic_config(url), "0006")
    with engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns("jobs")}
        assert "stack_size" not in columns
        assert connection.execute(sa.text("SELECT count(*) FROM jobs")).scalar() == 1
        assert connection.execute(sa.text("SELECT count(*) FROM loss_chunks")).scalar() == 1


# A job row as 0005 and 0006 have it (the model has more columns since 0007).
OLD_JOB = {
    "status": "succeeded", "stage": "nn", "optimizer": "sgd", "init": "normal",
    "lr": 1e-3, "iterations": 10, "n": 4, "d_in": 3, "h": 2, "d_out": 1, "seed": 1,
    "device": "cpu", "dtype": "float32", "queue": "cpu", "created_at": "2026-01-01 00:00:00",
    "cancel_requested": False, "attempts": 1, "steps_done": 10,
}  # fmt: skip


def insert_old_jobs(connection: sa.Connection, ids: list[int]) -> None:
    """Write job rows with the columns of revisions 0005 and 0006."""
    columns = ["id", *OLD_JOB]
    statement = sa.text(
        f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )
    connection.execute(statement, [{"id": job_id, **OLD_JOB} for job_id in ids])


def test_0010_scopes_idempotency_keys_by_owner_and_keeps_every_child_row(blank: Blank) -> None:
    # Given a 0009 database with a keyed job that has a tag and a loss chunk
    url, engine = blank
    upgrade(url, "0009")
    add_keyed_job(engine, 1, "alice")
    with engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO job_tags (job_id, tag, position) VALUES (1, 't', 0)")
        )
        connection.execute(
            sa.insert(LossChunk.__table__), {"job_id": 1, "first_step": 0, "count": 0, "data": b""}
        )
    # When upgraded (on SQLite the jobs table is copied and the old one dropped)
    upgrade(url)
    # Then no child row went with the old table, and the key is unique per owner only
    assert child_rows(engine) == (1, 1)
    add_keyed_job(engine, 2, "bob")
    add_keyed_job(engine, 3, None)
    for owner in ("alice", "bob", None):
        with pytest.raises(sa.exc.IntegrityError):
            add_keyed_job(engine, 4, owner)
    # And going back restores the key unique across owners, children kept
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM jobs WHERE id IN (2, 3)"))
    command.downgrade(alembic_config(url), "0009")
    assert child_rows(engine) == (1, 1)
    with pytest.raises(sa.exc.IntegrityError):
        add_keyed_job(engine, 2, "bob")


def add_keyed_job(engine: sa.Engine, job_id: int, owner: str | None) -> None:
    """Write a job row of revision 0009 with Idempotency-Key "k" and this owner."""
    with engine.begin() as connection:
        insert_old_jobs(connection, [job_id])
        connection.execute(
            sa.text("UPDATE jobs SET idempotency_key = 'k', owner = :owner WHERE id = :id"),
            {"owner": owner, "id": job_id},
        )


def child_rows(engine: sa.Engine) -> tuple[int, int]:
    """Job tags and loss chunks in the database."""
    with engine.connect() as connection:
        tags = connection.execute(sa.text("SELECT count(*) FROM job_tags")).scalar()
        chunks = connection.execute(sa.text("SELECT count(*) FROM loss_chunks")).scalar()
    return tags or 0, chunks or 0
