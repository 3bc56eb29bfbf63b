"""A long job's last checkpoint: weights and optimizer state at a step, to resume from."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models.base import Base, UTCDateTime, utcnow


class Checkpoint(Base):
    """The state a restarted attempt resumes from: training continues at `step`."""

    __tablename__ = "checkpoints"

    job_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    step: so.Mapped[int]
    attempt: so.Mapped[int]
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    # Raw tensor bytes laid out as `layout` says (never a pickle): see worker/training/snapshot.py.
    tensors: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    layout: so.Mapped[dict] = so.mapped_column(sa.JSON)
