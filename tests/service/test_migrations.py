"""Migrations: one head, and an empty database upgrades to exactly the models' schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.migrate import heads, upgrade
from service.models import Base
from tests.conftest import BACKENDS, DatabaseFactory


def test_single_head() -> None:
    assert len(heads()) == 1


@pytest.mark.parametrize("backend", BACKENDS)
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
        assert set(sa.inspect(engine).get_table_names()) >= {"jobs", "losses", "sweeps", "job_tags"}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_is_idempotent(backend: str, databases: DatabaseFactory) -> None:
    url = databases.create(backend)
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()
