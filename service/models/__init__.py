"""SQLAlchemy models shared by the API and the worker."""

from service.models.base import Base
from service.models.checkpoint import Checkpoint
from service.models.job import TERMINAL_STATES, Job, JobStatus, JobTag
from service.models.loss import Loss
from service.models.sweep import Sweep

__all__ = ["Base", "Checkpoint", "Job", "JobStatus", "JobTag", "Loss", "Sweep", "TERMINAL_STATES"]
