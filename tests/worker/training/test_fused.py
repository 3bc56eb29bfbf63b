"""Fused training: every job of a stack trains as it would alone, and ends on its own."""

import math

import pytest
import torch

from worker.training import FlushPolicy, TrainSpec, train_to_list
from worker.training.batch_size import bytes_per_job, fused_batch_size
from worker.training.checkpoints import Snapshot, StackCheckpointer, is_stacked
from worker.training.fused import train_fused, train_fused_to_lists
from worker.training.spec import INIT_NAMES, OPTIMIZER_NAMES

DIMS = {"N": 16, "D_in": 12, "H": 10, "D_out": 3}
# Rates that train visibly in 150 steps without reaching float32's noise floor.
RATES = {"sgd": 1e-3, "momentum": 2e-4, "nesterov": 2e-4, "rmsprop": 1e-3, "adagrad": 1e-2}
RATES.update(adam=1e-3, adamw=1e-3)


def spec(**fields) -> TrainSpec:
    """A small optim-stage spec, overridden by fields."""
    defaults = {"stage": "optim", "optimizer": "sgd", "init": "normal", "lr": 1e-3}
    return TrainSpec(**{**defaults, "iterations": 150, "seed": 0, **DIMS, **fields})


def assert_same_history(alone: list[float], fused: list[float]) -> None:
    """The stage contract: rel diff <= 1e-4 over the first 100 steps, final within 5%."""
    assert len(alone) == len(fused)
    for step, (a, b) in enumerate(zip(alone[:100], fused[:100], strict=True)):
        assert abs(a - b) <= 1e-4 * abs(a), (step, a, b)
    assert math.isclose(alone[-1], fused[-1], rel_tol=0.05)


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_each_fused_job_matches_the_job_alone_for_every_init(optimizer: str) -> None:
    # Given one job per init, each with its own seed, stacked in one batch
    specs = [
        spec(optimizer=optimizer, init=init, lr=RATES[optimizer], seed=seed)
        for seed, init in enumerate(INIT_NAMES)
    ]
    # When they train fused
    results = train_fused_to_lists(specs, flush_every=32)
    # Then each history is the one it has alone, and the nonzero inits really trained
    for job, result in zip(specs, results, strict=True):
        alone = train_to_list(job)
        assert result.diverged_at is None
        assert_same_history(alone.losses, result.losses)
        if job.init != "zeros":
            assert result.losses[-1] < 0.9 * result.losses[0]


@pytest.mark.parametrize("stage", ["tensors", "autograd", "nn", "module"])
def test_every_stage_fuses_to_its_own_history(stage: str) -> None:
    optimizer = "adam" if stage == "module" else "sgd"
    specs = [spec(stage=stage, optimizer=optimizer, seed=s) for s in (3, 4)]
    for job, result in zip(specs, train_fused_to_lists(specs), strict=True):
        assert_same_history(train_to_list(job).losses, result.losses)


@pytest.mark.parametrize("optimizer", ["momentum", "rmsprop", "adam", "adamw"])
def test_heterogeneous_rates_momenta_and_decay_in_one_batch(optimizer: str) -> None:
    takes_momentum = optimizer in ("momentum", "rmsprop")
    specs = [
        spec(
            optimizer=optimizer,
            lr=RATES[optimizer] * scale,
            seed=seed,
            weight_decay=decay,
            momentum=(0.5 + 0.2 * seed if takes_momentum else None),
        )
        for seed, (scale, decay) in enumerate([(1.0, None), (0.3, 0.1), (2.0, 0.0)])
    ]
    results = train_fused_to_lists(specs)
    for job, result in zip(specs, results, strict=True):
        assert_same_history(train_to_list(job).losses, result.losses)
    # Different settings really give different histories.
    assert len({round(r.losses[-1], 6) for r in results}) == 3


def test_one_job_diverging_leaves_the_others_training() -> None:
    specs = [spec(seed=1), spec(seed=2, lr=10.0), spec(seed=3)]
    results = train_fused_to_lists(specs, flush_every=16)
    alone = train_to_list(specs[1])
    assert alone.diverged_at is not None
    assert results[1].diverged_at == alone.diverged_at
    assert results[1].losses == pytest.approx(alone.losses, rel=1e-4)
    for i in (0, 2):
        assert results[i].diverged_at is None
        assert len(results[i].losses) == 150
        assert_same_history(train_to_list(specs[i]).losses, results[i].losses)


def test_cancelling_one_job_stops_only_that_job() -> None:
    specs = [spec(seed=s) for s in range(3)]
    histories: list[list[float]] = [[], [], []]

    def flush(chunks: list[tuple[int, int, list[float]]]) -> list[int]:
        for k, first, chunk in chunks:
            assert first == len(histories[k])
            histories[k].extend(chunk)
        return [1] if len(histories[1]) >= 40 else []  # job 1 cancelled at step 40

    outcomes = train_fused(specs, torch.device("cpu"), flush, FlushPolicy(every=20))
    assert [o.stopped for o in outcomes] == [False, True, False]
    assert len(histories[1]) == 40
    assert outcomes[1].steps == 40
    assert [len(h) for h in (histories[0], histories[2])] == [150, 150]
    assert_same_history(train_to_list(specs[2]).losses, histories[2])


def test_all_jobs_ending_early_stops_training() -> None:
    specs = [spec(seed=s, lr=10.0) for s in range(2)]
    results = train_fused_to_lists(specs, flush_every=8)
    assert all(r.diverged_at is not None and r.diverged_at < 150 for r in results)


def test_float64_fuses_to_its_own_history() -> None:
    specs = [spec(dtype="float64", optimizer="adam", seed=s) for s in range(3)]
    for job, result in zip(specs, train_fused_to_lists(specs), strict=True):
        alone = train_to_list(job).losses
        assert result.losses == pytest.approx(alone, rel=1e-9)


def test_incompatible_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="fusion_key"):
        train_fused_to_lists([spec(), spec(H=11)])
    with pytest.raises(ValueError, match="fusion_key"):
        train_fused_to_lists([spec(), spec(optimizer="adam")])


def test_batch_size_follows_the_job_size() -> None:
    small, large = spec(), spec(N=64, D_in=1000, H=100, D_out=10, optimizer="adam")
    assert bytes_per_job(large) > 100 * bytes_per_job(small)
    assert bytes_per_job(spec(dtype="float64")) == 2 * bytes_per_job(spec()) - 8 * 64
    cpu = torch.device("cpu")
    assert 1 <= fused_batch_size(large, cpu) < fused_batch_size(small, cpu) <= 1024
    assert fused_batch_size(small, cpu, cap=7) == 7


@pytest.mark.gpu
def test_fused_on_gpu_matches_the_jobs_alone_on_gpu() -> None:
    device = torch.device("cuda")
    specs = [spec(optimizer="adam", seed=s, weight_decay=0.01 * s) for s in range(4)]
    for job, result in zip(specs, train_fused_to_lists(specs, device=device), strict=True):
        assert_same_history(train_to_list(job, device).losses, result.losses)
    diverging = [spec(seed=1), spec(seed=2, lr=10.0)]
    results = train_fused_to_lists(diverging, device=device)
    assert results[0].diverged_at is None
    assert results[1].diverged_at is not None
    assert fused_batch_size(specs[0], device) > 1


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_a_stack_handed_back_and_resumed_equals_the_uninterrupted_stack_bitwise(
    optimizer: str,
) -> None:
    # Given a stack that checkpoints every 32 steps, and its uninterrupted run
    specs = [spec(optimizer=optimizer, lr=RATES[optimizer] * (1 + s / 4), seed=s) for s in range(3)]
    whole = train_fused_to_lists(specs)
    histories: list[list[float]] = [[] for _ in specs]
    saved: dict[int, Snapshot] = {}

    def flush(chunks: list[tuple[int, int, list[float]]]) -> list[int]:
        for k, first, chunk in chunks:
            del histories[k][first:]  # a resumed run writes from its checkpoint again
            histories[k].extend(chunk)
        return []

    def save(rows: list[tuple[int, int, bytes, dict]]) -> None:
        saved.update({k: Snapshot(step, blob, layout) for k, step, blob, layout in rows})

    flushes = iter(range(1000))
    # When it is asked to stop at its fifth flush (after a checkpoint at step 64)
    outcomes = train_fused(
        specs,
        torch.device("cpu"),
        flush,
        policy=FlushPolicy(every=16),
        checkpointer=StackCheckpointer(save, every=32),
        should_yield=lambda: next(flushes) == 4,
    )
    # Then every row stopped, saved at the step its stored losses reach
    assert all(outcome.yielded for outcome in outcomes)
    step = saved[0].step
    assert {s.step for s in saved.values()} == {step} == {len(h) for h in histories}
    assert is_stacked(saved[0].layout)
    # and the stack rebuilt from the checkpoints trains on to the uninterrupted histories
    again = train_fused(
        specs,
        torch.device("cpu"),
        flush,
        policy=FlushPolicy(every=16),
        checkpointer=StackCheckpointer(save, every=32),
        resume=[saved[k] for k in range(len(specs))],
    )
    assert not any(outcome.yielded for outcome in again)
    assert [h == w.losses for h, w in zip(histories, whole, strict=True)] == [True] * len(specs)


def test_a_rows_history_does_not_depend_on_its_stack_bitwise() -> None:
    # The fault suite's reference for a fused job is its stack of one: the rows never mix.
    specs = [spec(optimizer="adam", seed=s, lr=1e-3 * (s + 1)) for s in range(5)]
    stacked = train_fused_to_lists(specs)
    for job, result in zip(specs, stacked, strict=True):
        assert train_fused_to_lists([job])[0].losses == result.losses


def stack_with_refills(
    specs: list[TrainSpec],
    waiting: list[TrainSpec],
    stop: dict[int, int],
    **options,
) -> tuple[list, list[list[float]], list[TrainSpec]]:
    """Train specs fused, refilling freed rows from `waiting`; stop[job] = the step it is stopped.

    Outcomes, each job's stored history, and every job in index order (given, then refills).
    """
    jobs = list(specs)
    histories: list[list[float]] = [[] for _ in specs]

    def flush(chunks: list[tuple[int, int, list[float]]]) -> list[int]:
        for k, first, chunk in chunks:
            assert first == len(histories[k])  # each row writes on from its own step
            histories[k].extend(chunk)
        return [k for k, at in stop.items() if k < len(histories) and len(histories[k]) >= at]

    def refill(_running: list[int], free: int) -> list[TrainSpec]:
        joining = [waiting.pop(0) for _ in range(min(free, len(waiting)))]
        jobs.extend(joining)
        histories.extend([] for _ in joining)
        return joining

    outcomes = train_fused(specs, torch.device("cpu"), flush, refill=refill, **options)
    return outcomes, histories, jobs


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_a_refilled_row_trains_from_step_0_as_it_would_alone_bitwise(optimizer: str) -> None:
    # Given a stack of 3 whose job 1 is stopped (pruned, say) at step 40 and job 2 diverges
    lr = RATES[optimizer]
    specs = [spec(optimizer=optimizer, lr=lr, seed=0), spec(optimizer=optimizer, lr=lr, seed=1)]
    # Adam's steps are bounded by lr: it needs a far larger one to blow up.
    specs.append(spec(optimizer=optimizer, lr=1e9 if optimizer == "adam" else 10.0, seed=2))
    waiting = [spec(optimizer=optimizer, lr=lr * (1 + s / 3), seed=10 + s) for s in range(4)]
    # When freed rows take the waiting jobs as they free, and job 3 is stopped at step 30
    stop = {1: 40, 3: 30}
    outcomes, histories, jobs = stack_with_refills(
        specs, list(waiting), stop, policy=FlushPolicy(every=16)
    )
    # Then every job ran, each history exactly the one it has in a stack of its own
    assert len(jobs) == len(specs) + len(waiting)
    assert [o.stopped for o in outcomes] == [False, True, False, True, False, False, False]
    assert outcomes[2].diverged_at is not None
    for k, job in enumerate(jobs):
        alone = train_fused_to_lists([job])[0].losses
        # A stopped job stores up to the flush that saw it stopped (steps come in chunks).
        assert histories[k] == alone[: len(histories[k])], k
        assert len(histories[k]) >= stop.get(k, 0)
        assert outcomes[k].steps == len(histories[k])
    # and the refilled jobs ran to their own end, after the first rows had finished theirs
    assert [len(histories[k]) for k in (4, 5, 6)] == [150, 150, 150]
    assert len(histories[0]) == 150


def test_a_stack_flushes_when_any_row_computes_a_rung_step() -> None:
    # Given a stack of 2 with rungs at steps 10 and 30, whose job 1 is stopped at rung 10,
    # and a waiting job that takes its row at step 11 of its neighbour
    flushes: list[list[tuple[int, int, int]]] = []
    specs, waiting = [spec(seed=0), spec(seed=1)], [spec(seed=2)]
    histories: list[list[float]] = [[], []]

    def flush(chunks: list[tuple[int, int, list[float]]]) -> list[int]:
        flushes.append([(k, first, len(losses)) for k, first, losses in chunks])
        for k, _first, losses in chunks:
            histories[k].extend(losses)
        return [1] if len(histories[1]) == 11 else []

    def refill(_running: list[int], free: int) -> list[TrainSpec]:
        joining, waiting[:] = waiting[:free], waiting[free:]
        histories.extend([] for _ in joining)
        return joining

    train_fused(
        specs, torch.device("cpu"), flush,
        FlushPolicy(every=64, seconds=60.0, rungs=frozenset({10, 30})), refill=refill,
    )  # fmt: skip
    # Then it flushed right after each row's step 10 and 30 (the refilled row's too), job 1
    # trained no step past its rung, and every row's history is whole
    assert flushes[:4] == [
        [(0, 0, 11), (1, 0, 11)],
        [(0, 11, 11), (2, 0, 11)],  # the refill reaches its step 10 as job 0 reaches 21
        [(0, 22, 9), (2, 11, 9)],  # job 0 reaches step 30
        [(0, 31, 11), (2, 20, 11)],  # the refill reaches its step 30
    ]
    assert [len(h) for h in histories] == [150, 11, 150]
    assert histories[2] == train_fused_to_lists([spec(seed=2)])[0].losses


def test_a_refill_must_share_the_stacks_fusion_key() -> None:
    specs = [spec(seed=0), spec(seed=1)]
    with pytest.raises(ValueError, match="fusion_key"):
        stack_with_refills(specs, [spec(H=11)], stop={0: 16})


def test_a_refilled_stack_resumes_each_row_at_its_own_step_bitwise() -> None:
    # Given a refilled stack (rows at different steps) checkpointed and told to stop
    specs = [spec(optimizer="adam", seed=s) for s in range(2)]
    waiting = [spec(optimizer="adam", seed=7)]
    saved: dict[int, Snapshot] = {}

    def save(rows: list[tuple[int, int, bytes, dict]]) -> None:
        saved.update({k: Snapshot(step, blob, layout) for k, step, blob, layout in rows})

    flushes = iter(range(1000))
    outcomes, histories, jobs = stack_with_refills(
        specs,
        waiting,
        stop={0: 32},
        policy=FlushPolicy(every=16),
        checkpointer=StackCheckpointer(save, every=16),
        should_yield=lambda: next(flushes) == 6,
    )
    assert [o.yielded for o in outcomes] == [False, True, True]
    steps = {k: saved[k].step for k in (1, 2)}
    assert steps[1] > steps[2] > 0
    assert {k: len(histories[k]) for k in (1, 2)} == steps
    # When the two rows resume as one stack from their own steps
    resumed = [jobs[1], jobs[2]]
    rest: list[list[float]] = [[], []]

    def flush(chunks: list[tuple[int, int, list[float]]]) -> list[int]:
        for k, first, chunk in chunks:
            assert first == steps[k + 1] + len(rest[k])
            rest[k].extend(chunk)
        return []

    train_fused(
        resumed,
        torch.device("cpu"),
        flush,
        policy=FlushPolicy(every=16),
        checkpointer=StackCheckpointer(save, every=16),
        resume=[saved[1], saved[2]],
    )
    # Then each finishes with the history it has alone, bit for bit
    for k, job in enumerate(resumed):
        assert histories[k + 1] + rest[k] == train_fused_to_lists([job])[0].losses
