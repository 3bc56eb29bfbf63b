"""Loss histories packed in chunks: stored, read back, cut back, on both backends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from service.jobs import new_job, read_losses
from service.jobspec import validate_job
from service.loss_store import cut_history, store_chunks, store_losses, uncovered
from service.models import LossChunk
from service.results.histories import read_grid, read_rows
from tests.conftest import DatabaseFactory
from tests.support.loss_chunks import stored_history, stored_rows, stored_steps
from worker.attempts.claims import claim_job
from worker.attempts.record import record_chunk


def add_job(session: so.Session) -> int:
    """A queued job's id."""
    job = new_job(validate_job({"stage": "optim", "iterations": 600}), "cpu")
    session.add(job)
    session.commit()
    return job.id


def chunk_spans(session: so.Session, job_id: int) -> list[tuple[int, int]]:
    """The job's stored rows as (first_step, count)."""
    query = sa.select(LossChunk.first_step, LossChunk.count).where(LossChunk.job_id == job_id)
    return sorted(tuple(row) for row in session.execute(query))


def test_chunks_land_at_their_steps_and_repeats_keep_the_first_values(
    session: so.Session,
) -> None:
    job_id, other = add_job(session), add_job(session)
    first = [10.0 / (i + 1) for i in range(256)]
    store_losses(session, job_id, 0, first)
    store_losses(session, job_id, 256, [0.5, 1e30, 1e-300])
    # A chunk sent twice (a retried flush) and overlapping the stored steps adds only what is new.
    store_losses(session, job_id, 250, [99.0] * 11)
    store_losses(session, job_id, 0, first)
    store_losses(session, other, 3, [7.0])
    store_losses(session, other, 4, [])
    session.commit()
    steps, losses = read_losses(session, job_id)
    assert steps == list(range(261))
    assert losses[:256] == first
    assert losses[256:] == [0.5, 1e30, 1e-300, 99.0, 99.0]
    assert read_losses(session, other) == ([3], [7.0])
    # One row per flush, and no step stored twice.
    assert chunk_spans(session, job_id) == [(0, 256), (256, 3), (259, 2)]
    assert stored_history(session, job_id) == (steps, losses)


def test_a_chunk_fills_only_the_holes_between_stored_chunks(session: so.Session) -> None:
    job_id = add_job(session)
    store_losses(session, job_id, 2, [2.0, 3.0])
    store_losses(session, job_id, 6, [6.0])
    store_losses(session, job_id, 0, [-1.0] * 8)
    session.commit()
    assert stored_history(session, job_id) == (
        list(range(8)),
        [-1.0, -1.0, 2.0, 3.0, -1.0, -1.0, 6.0, -1.0],
    )
    assert chunk_spans(session, job_id) == [(0, 2), (2, 2), (4, 2), (6, 1), (7, 1)]


def test_uncovered_parts() -> None:
    assert uncovered(0, 10, []) == [(0, 10)]
    assert uncovered(0, 10, [(0, 10)]) == []
    assert uncovered(0, 10, [(5, 7), (2, 3)]) == [(0, 2), (3, 5), (7, 10)]
    assert uncovered(4, 8, [(0, 5), (7, 20)]) == [(5, 7)]
    assert uncovered(4, 8, [(0, 2), (9, 12)]) == [(4, 8)]


def test_values_come_back_bit_for_bit_with_nan_and_infinities(session: so.Session) -> None:
    job_id = add_job(session)
    values = [1.5, math.nan, math.inf, -math.inf, 5e-324, -0.0, 1 / 3]
    store_losses(session, job_id, 0, values)
    session.commit()
    _, got = read_losses(session, job_id)
    assert np.array(got).tobytes() == np.array(values).tobytes()


def test_windows_cross_chunk_boundaries(session: so.Session) -> None:
    job_id = add_job(session)
    for first in range(0, 500, 64):
        store_losses(session, job_id, first, [float(s) for s in range(first, min(first + 64, 500))])
    session.commit()
    for start, stop in [(None, None), (0, 64), (63, 65), (100, 300), (499, None), (None, 1)]:
        steps, losses = read_losses(session, job_id, start, stop)
        expected = list(range(500))[start:stop]
        assert steps == expected
        assert losses == [float(s) for s in expected]
    assert read_losses(session, job_id, 500, 600) == ([], [])


def test_many_jobs_in_one_call_and_read_back_as_rows_and_a_grid(session: so.Session) -> None:
    ids = [add_job(session) for _ in range(3)]
    store_chunks(session, [(ids[2], 0, [3.0, 3.5]), (ids[0], 0, [1.0]), (ids[1], 1, [2.0])])
    store_chunks(session, [(ids[2], 2, [4.0]), (ids[0], 1, [])])
    session.commit()
    rows = read_rows(session, [ids[2], ids[0], ids[1]])
    assert rows.tolist() == [
        [ids[0], 0, 1.0],
        [ids[1], 1, 2.0],
        [ids[2], 0, 3.0],
        [ids[2], 1, 3.5],
        [ids[2], 2, 4.0],
    ]
    grid = read_grid(session, [ids[1], ids[2]])
    assert grid.steps.tolist() == [0, 1, 2]
    assert grid.row(0)[0].tolist() == [1]
    assert grid.row(1)[1].tolist() == [3.0, 3.5, 4.0]
    assert stored_rows(session, ids) == [tuple(row) for row in rows.tolist()]


@pytest.mark.parametrize("stop", [0, 100, 256, 300, 500, 600])
def test_cut_history_keeps_exactly_the_steps_before(session: so.Session, stop: int) -> None:
    job_id = add_job(session)
    store_losses(session, job_id, 0, [float(s) for s in range(256)])
    store_losses(session, job_id, 256, [float(s) for s in range(256, 500)])
    cut_history(session, job_id, stop)
    session.commit()
    kept = list(range(min(stop, 500)))
    assert stored_history(session, job_id) == (kept, [float(s) for s in kept])
    # A resumed attempt's next flush lands after the cut with no step twice.
    store_losses(session, job_id, stop, [-1.0])
    session.commit()
    assert stored_steps(session, job_id) == [*kept, stop]


def test_record_chunk_keeps_the_summary_over_chunks(session: so.Session) -> None:
    job_id = add_job(session)
    claim, state = claim_job(session, job_id, "w@host", 60, max_attempts=3)
    assert claim is not None, state
    assert record_chunk(session, claim, 0, [4.0, 2.0, 3.0], 60)
    assert record_chunk(session, claim, 3, [1.0, 5.0], 60)
    session.commit()
    assert read_losses(session, job_id) == ([0, 1, 2, 3, 4], [4.0, 2.0, 3.0, 1.0, 5.0])
    assert (claim.best_loss, claim.best_step, claim.last_loss, claim.steps) == (1.0, 3, 5.0, 5)
    assert chunk_spans(session, job_id) == [(0, 3), (3, 2)]


@pytest.mark.postgres
def test_a_default_chunk_stays_in_its_row_on_postgresql(databases: DatabaseFactory) -> None:
    engine = sa.create_engine(databases.create("postgresql"))
    with so.Session(engine) as session:
        job_id = add_job(session)
        store_losses(session, job_id, 0, list(np.random.default_rng(0).random(256)))
        session.commit()
        toast_bytes = session.scalar(
            sa.text(
                "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'loss_chunks'"
            )
        )
    engine.dispose()
    # Out-of-line storage would cost a TOAST heap and index write on every flush (0006).
    assert toast_bytes == 0
