"""SQLAlchemy models shared by the API and the worker."""

from service.models.base import Base
from service.models.checkpoint import Checkpoint
from service.models.job import TERMINAL_STATES, Job, JobStatus, JobTag
from service.models.loss import LossChunk
from service.models.sweep import Sweep

__all__ = [
    "TERMINAL_STATES",
    "Base",
    "Checkpoint",
    "Job",
    "JobStatus",
    "JobTag",
    "LossChunk",
    "Sweep",
]
