"""Early stopping: the rules by hand, on recorded histories in the database, and against Optuna."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from service.db import make_session_factory, session_scope
from service.jobs import new_job
from service.jobspec import validate_job
from service.models import Job, JobStatus, Sweep
from service.sweeps.early_stop import asha_promotes, asha_rungs, median_stops
from service.sweeps.request import Asha
from tests.support.loss_chunks import stored_steps
from tests.support.rung_decisions import asha_rung_decisions
from worker.attempts.claims import claim_job
from worker.attempts.record import finish_job, median_reads, record_chunks

INF = math.inf


def test_asha_rungs_stop_before_the_last_step() -> None:
    rule = Asha(rule="asha", grace=2, reduction=2)
    assert asha_rungs(rule, 0, 100, 10) == [2, 4, 8]
    assert asha_rungs(rule, 0, 100, 9) == [2, 4]  # step 8 is the last: nothing to save
    assert asha_rungs(rule, 3, 8, 100) == [4]
    assert asha_rungs(rule, 5, 8, 100) == []


@pytest.mark.parametrize(
    ("value", "at_rung", "reduction", "promoted"),
    [
        (5.0, [5.0], 3, True),  # the first to reach a rung goes on
        (6.0, [5.0, 6.0], 3, False),  # fewer than `reduction`: only the best goes on
        (6.0, [5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 3, True),  # 6 // 3 = 2 go on
        (7.0, [5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 3, False),
        (6.0, [5.0, INF, INF, 6.0], 2, True),  # diverged jobs are the worst, taking the cut
        (6.0, [5.0, 6.0], 2, False),
    ],
)
def test_asha_promotes_the_best_fraction(
    value: float, at_rung: list[float], reduction: int, promoted: bool
) -> None:
    assert asha_promotes(value, at_rung, reduction) is promoted


@pytest.mark.parametrize(
    ("best", "ended", "stops"),
    [
        (5.0, [], False),
        (5.5, [5.0], True),
        (5.0, [5.0], False),
        (4.5, [5.0, 3.0], True),  # median 4
        (3.9, [5.0, 3.0], False),
        (3.0, [1.0, 2.0, INF], True),  # a diverged job is the worst: median 2
    ],
)
def test_median_stops_what_is_worse_than_the_median(
    best: float, ended: list[float], stops: bool
) -> None:
    assert median_stops(best, ended) is stops


def run_in_turn(
    factory: so.sessionmaker[so.Session],
    early_stop: dict[str, Any],
    histories: list[list[float]],
    flush: int,
) -> list[tuple[str, int | None, int]]:
    """Train the histories one job after another through record_chunks; (status, rung, steps)."""
    with session_scope(factory) as session:
        sweep = Sweep(name="s", seed=0, request={"name": "s", "early_stop": early_stop})
        session.add(sweep)
        session.flush()
        jobs = []
        for history in histories:
            job = new_job(validate_job({"stage": "nn", "iterations": len(history)}), "cpu")
            job.sweep_id = sweep.id
            jobs.append(job)
        session.add_all(jobs)
    for job, history in zip(jobs, histories, strict=True):
        with session_scope(factory) as session:
            claim, _ = claim_job(session, job.id, "w", lease_seconds=60, max_attempts=1)
        assert claim is not None
        # What the worker records: the finite prefix; a non-finite loss ends the job diverged.
        finite = next((i for i, v in enumerate(history) if not math.isfinite(v)), len(history))
        stopped = False
        for first in range(0, finite, flush):
            with session_scope(factory) as session:
                chunk = history[first : min(first + flush, finite)]
                if record_chunks(session, [(claim, first, chunk)], 60):
                    stopped = True
                    break
        with session_scope(factory) as session:
            if not stopped:
                diverged = finite < len(history)
                status = JobStatus.DIVERGED if diverged else JobStatus.SUCCEEDED
                assert finish_job(session, claim, status, diverged_at=finite if diverged else None)
            else:
                # The worker's own end for a stopped job is refused: the job already ended.
                assert not finish_job(session, claim, JobStatus.CANCELLED)
    with factory() as session:
        rows = [session.get_one(Job, job.id) for job in jobs]
        for row, history in zip(rows, histories, strict=True):
            assert stored_steps(session, row.id) == list(range(row.steps_done))
            if row.status == JobStatus.PRUNED:
                assert row.pruned_at is not None
                assert row.pruned_loss == history[row.pruned_at]
        return [(row.status, row.pruned_at, row.steps_done) for row in rows]


def test_asha_on_recorded_histories_by_hand(factory: so.sessionmaker[so.Session]) -> None:
    # Given rungs at steps 2, 4, 8 (grace 2, reduction 2) and flushes of 3 steps
    histories = [
        [10, 9, 8, 7, 6, 5, 4, 3, 2, 1],  # alone at every rung: goes on
        [10, 9, 9.5, 9, 8, 7, 6, 5, 4, 3],  # rung 2: [8, 9.5], the best 1 of 2 is 8
        [10, 9, 7, 6, 5.5, 5, 4, 3, 2.5, 2],  # rung 2: best of 3; rung 4: [6, 5.5] (job 1 out)
        # ... rung 8: [2, 2.5], the best is job 0's
        [10, 9, 8.5, 8, 7, 6, 5, 4, 3, 2],  # rung 2: [8, 9.5, 7, 8.5]: 2 of 4, 8.5 > 8
    ]
    # When each job runs in turn
    outcomes = run_in_turn(factory, {"rule": "asha", "grace": 2, "reduction": 2}, histories, 3)
    # Then the pruned ones keep their history up to the flush that crossed the rung
    assert outcomes == [
        (JobStatus.SUCCEEDED, None, 10),
        (JobStatus.PRUNED, 2, 3),
        (JobStatus.PRUNED, 8, 9),
        (JobStatus.PRUNED, 2, 3),
    ]


def test_asha_decisions_recomputed_from_the_rows_agree_and_catch_a_wrong_one(
    factory: so.sessionmaker[so.Session],
) -> None:
    # Given jobs run in turn (each alone: every competitor set is known from the rows)
    histories = [
        [10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
        [10, 9, 9.5, 9, 8, 7, 6, 5, 4, 3],
        [10, 9, 7, 6, 5.5, 5, 4, 3, 2.5, 2],
        [10, 9, 8.5, 8, 7, 6, 5, 4, 3, 2],
    ]
    run_in_turn(factory, {"rule": "asha", "grace": 2, "reduction": 2}, histories, 3)
    with factory() as session:
        sweep_id = session.scalars(sa.select(Sweep.id)).one()
        decisions = asha_rung_decisions(session, sweep_id)
        # Then the recomputation finds every decision the rule's, and certain
        assert [(d.job_id - decisions[0].job_id, d.rung, d.went_on) for d in decisions] == [
            (0, 2, True), (0, 4, True), (0, 8, True),
            (1, 2, False),
            (2, 2, True), (2, 4, True), (2, 8, False),
            (3, 2, False),
        ]  # fmt: skip
        assert all(d.agrees and d.certain for d in decisions)
        # When a decision is made wrong (the best job stopped at the first rung)
        first = decisions[0].job_id
        session.execute(sa.update(Job).where(Job.id == first).values(status="pruned", pruned_at=2))
        # Then the recomputation says so, and that job 2, alone at rung 8 now, was stopped wrongly
        wrong = [d for d in asha_rung_decisions(session, sweep_id) if not d.agrees]
        assert [(d.job_id, d.rung) for d in wrong] == [(first, 2), (first + 2, 8)]


def test_asha_counts_diverged_jobs_as_the_worst(factory: so.sessionmaker[so.Session]) -> None:
    histories = [
        [9, 8, 5, 4, 3],
        [9, 8, math.nan, 1, 1],  # diverged at step 2, before the rung
        [9, math.inf, 1, 1, 1],
        [9, 8, 6, 4, 3],  # rung 2: [5, inf, inf, 6]: 2 of 4 go on, 6 among them
    ]
    outcomes = run_in_turn(factory, {"rule": "asha", "grace": 2, "reduction": 2}, histories, 2)
    assert [status for status, _, _ in outcomes] == [
        JobStatus.SUCCEEDED,
        JobStatus.DIVERGED,
        JobStatus.DIVERGED,
        JobStatus.SUCCEEDED,
    ]


def test_median_on_recorded_histories_by_hand(factory: so.sessionmaker[so.Session]) -> None:
    # Given flushes of 2 steps: decisions at steps 3 and 5 (warmup 2; 7 is the last step)
    histories = [
        [8, 7, 6, 5, 4, 3, 2, 1],  # no ended job to compare with
        [8, 7, 6.5, 5.5, 4.5, 3.5, 2.5, 1.5],  # step 3: best 5.5 > median [5]
        [9, 6, 5, 4.8, 4.6, 4.4, 4.2, 4],  # step 3: 4.8 <= 5; step 5: 4.4 > 3
        [8, 5, 4, 3, 2, 1.5, 1, 0.5],  # 3 <= 5, 1.5 <= 3
        [8, 3.9, 6, 4.5, 4, 2, 1.9, 1.8],  # step 3: best so far 3.9 <= median [5, 3]; 2 <= 2.25
    ]
    outcomes = run_in_turn(factory, {"rule": "median", "warmup": 2}, histories, 2)
    assert outcomes == [
        (JobStatus.SUCCEEDED, None, 8),
        (JobStatus.PRUNED, 3, 4),
        (JobStatus.PRUNED, 5, 6),
        (JobStatus.SUCCEEDED, None, 8),
        (JobStatus.SUCCEEDED, None, 8),
    ]


def noisy_histories(seed: int, jobs: int, steps: int) -> list[list[float]]:
    """Falling curves with different rates and noise, as a sweep's jobs would record."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.01, 0.2, size=jobs)
    curves = 100 * np.exp(-np.outer(rates, np.arange(steps)))
    noise = rng.lognormal(0.0, 0.1, size=(jobs, steps))
    return (curves * noise).tolist()


def optuna_decisions(
    pruner: optuna.pruners.BasePruner, histories: list[list[float]], checks: list[list[int]]
) -> list[tuple[str, int | None]]:
    """Each history told to a study in turn, asking should_prune after the steps in `checks`."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(pruner=pruner)
    outcomes: list[tuple[str, int | None]] = []
    for history, check_at in zip(histories, checks, strict=True):
        trial = study.ask()
        pruned_at = None
        for step, value in enumerate(history):
            trial.report(value, step)
            if step in check_at and trial.should_prune():
                pruned_at = step
                break
        if pruned_at is None:
            study.tell(trial, history[-1])
            outcomes.append((JobStatus.SUCCEEDED, None))
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            outcomes.append((JobStatus.PRUNED, pruned_at))
    return outcomes


@pytest.mark.parametrize(("grace", "reduction", "flush"), [(1, 2, 7), (3, 3, 5), (2, 4, 64)])
def test_asha_decides_as_optunas_successive_halving(
    factory: so.sessionmaker[so.Session], grace: int, reduction: int, flush: int
) -> None:
    histories = noisy_histories(grace * 10 + reduction, jobs=16, steps=60)
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=grace, reduction_factor=reduction, min_early_stopping_rate=0
    )
    # Optuna checks every step; trainq at each flush, for each rung it crossed.
    every_step = [list(range(len(h) - 1)) for h in histories]
    expected = optuna_decisions(pruner, histories, every_step)
    early_stop = {"rule": "asha", "grace": grace, "reduction": reduction}
    outcomes = run_in_turn(factory, early_stop, histories, flush)
    assert [(status, rung) for status, rung, _ in outcomes] == expected
    assert sum(status == JobStatus.PRUNED for status, _ in expected) >= 4


@pytest.mark.parametrize(("warmup", "flush"), [(0, 5), (10, 8)])
def test_median_decides_as_optunas_median_pruner(
    factory: so.sessionmaker[so.Session], warmup: int, flush: int
) -> None:
    histories = noisy_histories(warmup + flush, jobs=12, steps=50)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=warmup)
    # Both decide at the end of each flush but the last, from the step's median of ended jobs.
    flush_ends = [[e - 1 for e in range(flush, len(h), flush)] for h in histories]
    expected = optuna_decisions(pruner, histories, flush_ends)
    outcomes = run_in_turn(factory, {"rule": "median", "warmup": warmup}, histories, flush)
    assert [(status, rung) for status, rung, _ in outcomes] == expected
    assert sum(status == JobStatus.PRUNED for status, _ in expected) >= 3


def test_a_stacks_flush_reads_the_median_once_before_its_write_and_only_the_steps_values(
    factory: so.sessionmaker[so.Session],
) -> None:
    # Given a median sweep with three ended jobs and a stack of four running ones
    rule = {"rule": "median", "warmup": 2}
    with session_scope(factory) as session:
        sweep = Sweep(name="s", seed=0, request={"name": "s", "early_stop": rule})
        session.add(sweep)
        session.flush()
        jobs = [new_job(validate_job({"stage": "nn", "iterations": 20}), "cpu") for _ in range(7)]
        for job in jobs:
            job.sweep_id = sweep.id
        session.add_all(jobs)
    ended, stack = jobs[:3], jobs[3:]
    for job, level in zip(ended, (1.0, 2.0, 3.0), strict=True):
        with session_scope(factory) as session:
            claim, _ = claim_job(session, job.id, "w", lease_seconds=60, max_attempts=1)
            assert claim is not None
            record_chunks(session, [(claim, 0, [level] * 20)], 60)
            assert finish_job(session, claim, JobStatus.SUCCEEDED)
    with session_scope(factory) as session:
        claims = [claim_job(session, job.id, "w", 60, max_attempts=1)[0] for job in stack]
    assert all(claims)
    chunks = [
        (claim, 0, [level] * 6) for claim, level in zip(claims, (0.5, 1.5, 2.5, 3.5), strict=True)
    ]
    reads: list[str] = []

    def watch(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "JOIN loss_chunks" in statement:
            reads.append(statement)

    engine = factory.kw["bind"].engine
    sa.event.listen(engine, "before_cursor_execute", watch)
    try:
        # When the stack flushes steps 0-5 of each job: the sweep read first, on its own
        with make_session_factory(engine)() as session:
            known = median_reads(session, chunks)  # type: ignore[arg-type]
        # Then the ended jobs' losses at the step were read once for all four, value by value
        assert len(reads) == 1, reads
        assert "substr(" in reads[0].lower()
        # and the write transaction that holds the rows reads none of the sweep
        with session_scope(factory) as session:
            stopping = record_chunks(session, chunks, 60, known)  # type: ignore[arg-type]
        assert len(reads) == 1, reads
    finally:
        sa.event.remove(engine, "before_cursor_execute", watch)
    # and each decided as before: worse than the median (2.0) stops
    assert sorted(claim.job_id for claim in stopping) == [stack[2].id, stack[3].id]
