"""The job row: the source of truth for one training run's settings and state."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models.base import Base, UTCDateTime, owner_key_indexes, utcnow

if TYPE_CHECKING:
    from service.models.sweep import Sweep


class JobStatus(enum.StrEnum):
    """Where a job is in its life: queued -> running -> one terminal state."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DIVERGED = "diverged"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"


TERMINAL_STATES = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.DIVERGED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.PRUNED,
    }
)


class Job(Base):
    """One training experiment: its fields, where it ran and how it ended."""

    __tablename__ = "jobs"
    # The sweep's progress (one GROUP BY status), and the job list's filter + sort pairs,
    # each ending in id so keyset pages seek straight to their start.
    __table_args__ = (
        sa.Index("ix_jobs_sweep_id_status", "sweep_id", "status"),
        sa.Index("ix_jobs_created_at_id", "created_at", "id"),
        sa.Index("ix_jobs_final_loss_id", "final_loss", "id"),
        sa.Index("ix_jobs_status_created_at_id", "status", "created_at", "id"),
        sa.Index("ix_jobs_status_final_loss_id", "status", "final_loss", "id"),
        sa.Index("ix_jobs_sweep_id_final_loss_id", "sweep_id", "final_loss", "id"),
        sa.Index("ix_jobs_owner_status", "owner", "status"),
        sa.Index("ix_jobs_status_queue_created_at", "status", "queue", "created_at"),
        *owner_key_indexes("jobs"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    sweep_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("sweeps.id", ondelete="CASCADE"), index=True
    )
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default=JobStatus.QUEUED, index=True)

    # The experiment, as the spec's job table names it (dims in lower case here).
    stage: so.Mapped[str] = so.mapped_column(sa.String(16))
    optimizer: so.Mapped[str] = so.mapped_column(sa.String(16))
    momentum: so.Mapped[float | None] = so.mapped_column(sa.Double)
    weight_decay: so.Mapped[float | None] = so.mapped_column(sa.Double)
    init: so.Mapped[str] = so.mapped_column(sa.String(24))
    lr: so.Mapped[float] = so.mapped_column(sa.Double)
    iterations: so.Mapped[int]
    n: so.Mapped[int]
    d_in: so.Mapped[int]
    h: so.Mapped[int]
    d_out: so.Mapped[int]
    seed: so.Mapped[int] = so.mapped_column(sa.BigInteger)
    device: so.Mapped[str] = so.mapped_column(sa.String(8))
    dtype: so.Mapped[str] = so.mapped_column(sa.String(8))
    name: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    queue: so.Mapped[str] = so.mapped_column(sa.String(16))
    # Unique per owner (see models/base.owner_key_indexes).
    idempotency_key: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    # The name of the token that submitted it (null without tokens).
    owner: so.Mapped[str | None] = so.mapped_column(sa.String(64))

    # Life of the job.
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow, index=True)
    enqueued_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    started_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    finished_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    lease_expires_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    cancel_requested: so.Mapped[bool] = so.mapped_column(default=False)
    attempts: so.Mapped[int] = so.mapped_column(default=0)
    worker: so.Mapped[str | None] = so.mapped_column(sa.String(255))
    ran_on: so.Mapped[str | None] = so.mapped_column(sa.String(255))
    torch_version: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    # Jobs the latest attempt trains with: 1 alone, K in a fused stack of K (null: not yet run).
    stack_size: so.Mapped[int | None]

    # Summary of the stored history, written with it.
    steps_done: so.Mapped[int] = so.mapped_column(default=0)
    final_loss: so.Mapped[float | None] = so.mapped_column(sa.Double, index=True)
    min_loss: so.Mapped[float | None] = so.mapped_column(sa.Double)
    min_loss_step: so.Mapped[int | None]
    diverged_at: so.Mapped[int | None]
    # The rung (a step) at which its sweep's early-stopping rule stopped it (status pruned).
    pruned_at: so.Mapped[int | None]
    # Its loss at that rung, which ranks it among the pruned (see sweeps/leaderboard.py).
    pruned_loss: so.Mapped[float | None] = so.mapped_column(sa.Double)

    sweep: so.Mapped[Sweep | None] = so.relationship(back_populates="jobs")
    tag_rows: so.Mapped[list[JobTag]] = so.relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="JobTag.position"
    )

    @property
    def tags(self) -> list[str]:
        """The job's labels in the order given."""
        return [row.tag for row in self.tag_rows]

    @property
    def is_terminal(self) -> bool:
        """Whether the job has reached its one terminal state."""
        return self.status in TERMINAL_STATES


class JobTag(Base):
    """One label of a job, a row each so jobs can be filtered by tag."""

    __tablename__ = "job_tags"

    job_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    tag: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True, index=True)
    position: so.Mapped[int] = so.mapped_column(default=0)
