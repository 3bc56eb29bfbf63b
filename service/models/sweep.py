"""A sweep: a named set of jobs expanded from a grid or a random search."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models.base import Base, UTCDateTime, owner_key_indexes, utcnow

if TYPE_CHECKING:
    from service.models.job import Job


class Sweep(Base):
    """The request that made a set of jobs, kept so the sweep can be read back and replayed."""

    __tablename__ = "sweeps"
    __table_args__ = owner_key_indexes("sweeps")

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
    # Unique per owner (see models/base.owner_key_indexes).
    idempotency_key: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    # The name of the token that submitted it (null without tokens).
    owner: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    # A search sweep (null otherwise): the trials it wants in all, and the sampler's asks so
    # far (each ask's sampler is seeded from the sweep's seed and the ask's number).
    trials_wanted: so.Mapped[int | None]
    trials_asked: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    # The controller that asks its trials, under a lease as a job's attempt is.
    controller: so.Mapped[str | None] = so.mapped_column(sa.String(255))
    controller_expires_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)

    jobs: so.Mapped[list[Job]] = so.relationship(back_populates="sweep", passive_deletes=True)
