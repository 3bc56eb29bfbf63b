"""Migrations: one head, and an empty database upgrades to exactly the models' schema."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.jobs import new_job
from service.jobspec import validate_job
from service.migrate import ROOT, alembic_config, heads, upgrade
from service.models import Base, LossChunk
from tests.conftest import BACKEND_PARAMS, DatabaseFactory
from tests.support.loss_chunks import stored_rows


def test_single_head() -> None:
    assert len(heads()) == 1


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_upgrade_empty_database_matches_models(backend: str, databases: DatabaseFactory) -> None:
    url = databases.create(backend, migrate=False)
    upgrade(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            version = connection.execute(
                sa.text("SELECT version_num FROM alembic_version")
            ).scalar()
        assert diff == []
        assert version == heads()[0]
        assert set(sa.inspect(engine).get_table_names()) >= {
            "jobs",
            "loss_chunks",
            "sweeps",
            "job_tags",
        }
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_upgrade_is_idempotent(backend: str, databases: DatabaseFactory) -> None:
    url = databases.create(backend)
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_0006_packs_loss_rows_into_chunks_and_back(
    backend: str, databases: DatabaseFactory
) -> None:
    url = databases.create(backend, migrate=False)
    upgrade(url, "0005")
    engine = sa.create_engine(url)
    # Two jobs: 600 steps (three chunks of at most 256) and one with a hole in its steps.
    rows = [(1, s, 1000.0 / (s + 1)) for s in range(600)]
    rows += [(2, s, float(-s)) for s in (0, 1, 2, 5, 6)]
    # The jobs table is the same at 0005 and at head: the model writes its rows.
    with so.Session(engine) as session, session.begin():
        session.add_all(new_job(validate_job({"stage": "nn"}), "cpu") for _ in range(2))
    with engine.begin() as connection:
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
    engine.dispose()


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
