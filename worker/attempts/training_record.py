"""The record one training writes: each flush fenced by the heartbeat, soft limits, retries."""

from __future__ import annotations

import time
from collections.abc import Iterable

from service.config import Config
from service.sweeps import wakeup
from worker.attempts.claims import Claim
from worker.attempts.record import median_reads, record_chunks, save_checkpoints
from worker.attempts.run import Run


class TrainingRecord:
    """The claims of one training as they record: fenced, within their soft limit, retried."""

    def __init__(self, run: Run, claims: list[Claim]) -> None:
        self.run = run
        self.claims: list[Claim] = []
        self.soft_limit = run.config.job_soft_limit_seconds
        # Each job's, from its own start. Checked between chunks: Celery's own soft limit
        # raises anywhere, mid-commit too.
        self.deadlines: dict[int, float] = {}
        self.add(claims)

    def add(self, claims: list[Claim]) -> None:
        """Record these claims too (jobs that joined a refilled stack), their limit from now."""
        self.claims.extend(claims)
        if self.soft_limit > 0:
            start = time.monotonic()
            self.deadlines.update({claim.job_id: start + self.soft_limit for claim in claims})

    def record_chunks(self, chunks: list[tuple[Claim, int, list[float]]]) -> set[int]:
        """Record one flush's chunks (claim, first step, losses) in one transaction; the job
        ids that must stop."""
        beat = self.run.beat
        # A fenced attempt records not one more loss (see Heartbeat.lost).
        live = [chunk for chunk in chunks if not beat.lost(chunk[0])]
        stopping = {claim.job_id for claim, _, _ in chunks if beat.lost(claim)}
        if live:
            summaries = [claim.summary() for claim, _, _ in live]
            try:
                ended = self.run.read(median_reads, live)
                stop = self.run.transaction(
                    record_chunks, live, self.run.config.lease_seconds, ended
                )
            except BaseException:
                # Rolled back: the claims must not count those rows.
                for (claim, _, _), summary in zip(live, summaries, strict=True):
                    claim.restore(summary)
                raise
            stopping |= {claim.job_id for claim in stop}
            announce(self.run.config, stop)
        now = time.monotonic()
        for claim, _, _ in chunks:
            deadline = self.deadlines.get(claim.job_id)
            if deadline is not None and now > deadline and claim.job_id not in stopping:
                claim.failure = (
                    f"soft time limit exceeded: the job ran longer than {self.soft_limit:g} s"
                )
                stopping.add(claim.job_id)
        return stopping

    def save_checkpoints(self, states: list[tuple[Claim, int, bytes, dict]]) -> None:
        """Store the jobs' checkpoints, each at its step, in one transaction."""
        self.run.transaction(save_checkpoints, states)


def announce(config: Config, ended: Iterable[Claim]) -> None:
    """Wake the search controllers of the sweeps whose trials just ended (after the commit)."""
    sweeps = [claim.sweep_id for claim in ended if claim.searched and claim.sweep_id is not None]
    if sweeps:
        wakeup.announce(config.broker_url, sweeps)
