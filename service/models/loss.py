"""Loss histories, packed: one row per chunk of consecutive steps, written as the worker flushes."""

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models.base import Base


class LossChunk(Base):
    """Losses of one job at steps first_step .. first_step + count - 1, before each step's update.

    `data` holds `count` little-endian float64 values (8 bytes each, NaN and infinities kept as
    they are). A row per step cost ~10 us of table and index upkeep per step on PostgreSQL, more
    than the rest of a flush; a chunk is one row whatever its length (bench/RESULTS.md).
    """

    __tablename__ = "loss_chunks"

    job_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    first_step: so.Mapped[int] = so.mapped_column(primary_key=True)
    count: so.Mapped[int]
    data: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
