"""A sweep: a named set of jobs expanded from a grid or a random search."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models.base import Base, UTCDateTime, utcnow

if TYPE_CHECKING:
    from service.models.job import Job


class Sweep(Base):
    """The request that made a set of jobs, kept so the sweep can be read back and replayed."""

    __tablename__ = "sweeps"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200), index=True)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow, index=True)
    seed: so.Mapped[int] = so.mapped_column(sa.BigInteger)
    request: so.Mapped[dict[str, Any]] = so.mapped_column(sa.JSON)
    varied: so.Mapped[list[str]] = so.mapped_column(sa.JSON, default=list)
    job_count: so.Mapped[int] = so.mapped_column(default=0)
    cancel_requested: so.Mapped[bool] = so.mapped_column(default=False)
    # Expanded combinations left out because they failed validation (skip_invalid).
    skipped: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    idempotency_key: so.Mapped[str | None] = so.mapped_column(sa.String(200), unique=True)
    # The name of the token that submitted it (null without tokens).
    owner: so.Mapped[str | None] = so.mapped_column(sa.String(64))

    jobs: so.Mapped[list[Job]] = so.relationship(back_populates="sweep", passive_deletes=True)
