"""Declarative base with Alembic-friendly constraint names."""

from datetime import UTC, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(so.DeclarativeBase):
    """Base of every trainq table."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def owner_key_indexes(table: str) -> tuple[sa.Index, sa.Index]:
    """An Idempotency-Key is unique per owner; rows without an owner (no tokens) share one."""
    # Two indexes: a unique index holds NULLs all different, so ownerless keys need their own.
    ownerless = sa.text("owner IS NULL")
    return (
        sa.Index(f"uq_{table}_owner_idempotency_key", "owner", "idempotency_key", unique=True),
        sa.Index(
            f"uq_{table}_ownerless_idempotency_key",
            "idempotency_key",
            unique=True,
            sqlite_where=ownerless,
            postgresql_where=ownerless,
        ),
    )


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored naive in UTC and read back timezone-aware (SQLite keeps no zone)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)
