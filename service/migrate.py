"""Run Alembic migrations programmatically (trainq db upgrade, tests, trainq up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str | None = None) -> AlembicConfig:
    """Alembic's configuration for this checkout, optionally pinned to a database URL."""
    config = AlembicConfig(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    """Bring a database to `revision` (the latest by default)."""
    command.upgrade(alembic_config(database_url), revision)


def heads() -> list[str]:
    """The migration graph's heads (one, in a healthy tree)."""
    return list(ScriptDirectory.from_config(alembic_config()).get_heads())
