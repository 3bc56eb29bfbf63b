"""The per-owner cap on queued-plus-running jobs: counted under a per-owner lock.

Whoever counts an owner's active jobs to decide how many more to insert (the API's submissions,
the search controller's asks) calls `active_jobs` in the transaction that then inserts them, and
commits soon after: the count and the insert are then one step for that owner. On PostgreSQL
the count first takes a transaction-scoped advisory lock keyed by the owner, so two transactions
of one owner wait for each other; on SQLite writers begin with BEGIN IMMEDIATE (service/db.py),
which already serializes them.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.models import Job, JobStatus

ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def lock_key(owner: str | None) -> int:
    """The advisory lock's 64-bit key for an owner (None: the deployment without tokens)."""
    # Stable across processes and versions, unlike hash(); the prefix keeps trainq's keys apart
    # from any other advisory locks on the database.
    named = b"trainq-owner\x00" + (b"\x01" + owner.encode() if owner is not None else b"")
    return int.from_bytes(hashlib.sha256(named).digest()[:8], "big", signed=True)


def active_jobs(session: so.Session, owner: str | None, *, lock: bool = True) -> int:
    """The owner's queued-plus-running jobs, counted holding the owner's lock (unless told not
    to: an estimate, for a count no insert is decided by)."""
    if lock and session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(owner))))
    who = Job.owner == owner if owner is not None else Job.owner.is_(None)
    count = session.scalar(
        sa.select(sa.func.count()).select_from(Job).where(who, Job.status.in_(ACTIVE))
    )
    return count or 0
