"""Loss history: one row per (job, step), written in batches while the job trains."""

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models.base import Base


class Loss(Base):
    """The loss of one job at one step, computed before that step's update."""

    __tablename__ = "losses"
    # Rows of one job sit together, so reading a history is one range scan.
    __table_args__ = {"sqlite_with_rowid": False}

    job_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    step: so.Mapped[int] = so.mapped_column(primary_key=True)
    loss: so.Mapped[float] = so.mapped_column(sa.Double)
