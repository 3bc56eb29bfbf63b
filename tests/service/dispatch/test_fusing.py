"""The fused-batch planner: compatible jobs together, incompatible ones apart, sizes even."""

import pytest
import sqlalchemy.orm as so

from service.dispatch.fusing import plan_batches
from service.jobs import new_job
from service.jobspec import validate_job
from service.models import Job


def add_jobs(session: so.Session, count: int, **fields) -> list[Job]:
    """Insert count queued jobs of one spec (seeds differ), returning them with ids."""
    jobs = [
        new_job(validate_job({"stage": "optim", "seed": seed, **fields}), "cpu")
        for seed in range(count)
    ]
    session.add_all(jobs)
    session.commit()
    return jobs


def test_compatible_jobs_share_batches_and_others_do_not(session: so.Session) -> None:
    same = add_jobs(session, 5, lr=1e-3) + add_jobs(session, 3, lr=1e-2)
    other_opt = add_jobs(session, 2, optimizer="adam")
    other_dim = add_jobs(session, 2, H=7)
    other_iters = add_jobs(session, 1, iterations=10)
    other_dtype = add_jobs(session, 1, dtype="float64")
    gpu = add_jobs(session, 2, device="cuda")
    for job in gpu:
        job.queue = "gpu"
    session.commit()
    everything = same + other_opt + other_dim + other_iters + other_dtype + gpu
    batches = plan_batches(everything)
    as_sets = sorted((queue, sorted(ids)) for queue, ids in batches)
    expected = [
        ("cpu", sorted(j.id for j in group))
        for group in (same, other_opt, other_dim, other_iters, other_dtype)
    ]
    assert as_sets == sorted([*expected, ("gpu", sorted(j.id for j in gpu))])


@pytest.mark.parametrize(("count", "max_batch", "sizes"), [(10, 4, [3, 3, 4]), (8, 4, [4, 4])])
def test_a_large_group_splits_into_near_equal_batches(
    session: so.Session, count: int, max_batch: int, sizes: list[int]
) -> None:
    jobs = add_jobs(session, count)
    batches = plan_batches(jobs, max_batch=max_batch)
    assert sorted(len(ids) for _, ids in batches) == sizes
    assert sorted(i for _, ids in batches for i in ids) == sorted(j.id for j in jobs)


def test_max_batch_must_be_positive(session: so.Session) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        plan_batches(add_jobs(session, 1), max_batch=0)


def test_gpu_batches_are_larger_than_cpu_batches(session: so.Session) -> None:
    cpu = add_jobs(session, 100)
    gpu = add_jobs(session, 100, device="cuda")
    for job in gpu:
        job.queue = "gpu"
    session.commit()
    sizes = {
        queue: sorted(len(ids) for q, ids in plan_batches(cpu + gpu) if q == queue)
        for queue in ("cpu", "gpu")
    }
    assert sizes == {"cpu": [50, 50], "gpu": [100]}
