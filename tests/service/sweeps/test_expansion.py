"""Sweep expansion: grid order, random draws reproducible from the sweep seed, replicates."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from service.sweeps.expansion import count_jobs, expand
from service.sweeps.request import SweepRequest, validate_sweep


def sweep(**parts: object) -> SweepRequest:
    """A validated request named 's'."""
    return validate_sweep({"name": "s", **parts})


def test_grid_is_the_product_in_order_last_field_fastest() -> None:
    request = sweep(
        base={"stage": "optim", "iterations": 5},
        grid={"optimizer": ["sgd", "adam"], "lr": [1e-3, 1e-2, 1e-1]},
        seeds=[1, 2],
    )
    expansion = expand(request)
    got = [(j["optimizer"], j["lr"], j["seed"]) for j in expansion.jobs]
    assert got == list(itertools.product(["sgd", "adam"], [1e-3, 1e-2, 1e-1], [1, 2]))
    assert all(j["stage"] == "optim" and j["iterations"] == 5 for j in expansion.jobs)
    assert expansion.varied == ["optimizer", "lr", "seed"]
    assert count_jobs(request) == (12, "grid")


def test_grid_overrides_base_and_constant_fields_are_not_varied() -> None:
    expansion = expand(
        sweep(base={"stage": "optim", "lr": 5.0}, grid={"lr": [0.1], "init": ["normal", "zeros"]})
    )
    assert [j["lr"] for j in expansion.jobs] == [0.1, 0.1]
    assert expansion.varied == ["init"]


def test_without_seeds_every_configuration_shares_one_seed_from_the_sweep_seed() -> None:
    request = sweep(base={"stage": "optim"}, grid={"lr": [0.1, 0.2]}, seed=42)
    first, again = expand(request), expand(request)
    assert first.seed == 42
    assert len({j["seed"] for j in first.jobs}) == 1
    assert first.jobs == again.jobs
    assert expand(sweep(base={"stage": "optim"}, grid={"lr": [0.1, 0.2]}, seed=43)).jobs != (
        first.jobs
    )


def test_sweep_seed_is_drawn_when_absent_and_replays() -> None:
    request = sweep(base={"stage": "optim"}, random={"n": 4, "lr": {"log_uniform": [1e-4, 1]}})
    drawn = expand(request)
    assert 0 <= drawn.seed < 2**63
    replay = expand(request.model_copy(update={"seed": drawn.seed}))
    assert replay.jobs == drawn.jobs


def test_random_draws_are_reproducible_and_within_bounds() -> None:
    request = sweep(
        base={"stage": "optim"},
        random={
            "n": 500,
            "space": {
                "lr": {"log_uniform": [1e-5, 1e-1]},
                "momentum": {"uniform": [0.5, 0.9]},
                "optimizer": ["momentum", "nesterov"],
            },
        },
        seed=7,
    )
    jobs = expand(request).jobs
    assert jobs == expand(request).jobs
    lrs = [j["lr"] for j in jobs]
    assert all(1e-5 <= lr <= 1e-1 for lr in lrs)
    # log-uniform: about half the draws below the geometric middle, 1e-3.
    below = sum(lr < 1e-3 for lr in lrs)
    assert 200 < below < 300
    assert all(0.5 <= j["momentum"] <= 0.9 for j in jobs)
    assert {j["optimizer"] for j in jobs} == {"momentum", "nesterov"}
    assert len({j["lr"] for j in jobs}) == 500


def test_random_is_crossed_with_the_grid_and_draws_are_shared() -> None:
    request = sweep(
        base={"stage": "optim"},
        grid={"optimizer": ["sgd", "adam"]},
        random={"n": 3, "lr": {"log_uniform": [1e-4, 1e-2]}},
        repeats=2,
        seed=1,
    )
    jobs = expand(request).jobs
    assert len(jobs) == 12
    assert count_jobs(request) == (12, "grid")
    by_optimizer = {o: [j["lr"] for j in jobs if j["optimizer"] == o] for o in ("sgd", "adam")}
    assert by_optimizer["sgd"] == by_optimizer["adam"]


def test_repeats_draw_replicate_seeds_from_the_sweep_seed() -> None:
    request = sweep(base={"stage": "optim"}, grid={"lr": [0.1, 0.2]}, repeats=3, seed=5)
    jobs = expand(request).jobs
    seeds = [j["seed"] for j in jobs]
    assert seeds[:3] == seeds[3:]
    assert len(set(seeds[:3])) == 3
    assert seeds == [j["seed"] for j in expand(request).jobs]
    assert all(0 <= s < 2**63 for s in seeds)


def test_log_uniform_bounds_hold_at_the_edges() -> None:
    jobs = expand(sweep(random={"n": 50, "lr": {"log_uniform": [0.01, 0.01]}}, seed=3)).jobs
    assert {j["lr"] for j in jobs} == {0.01}
    wide = expand(sweep(random={"n": 2000, "lr": {"log_uniform": [1e-300, 10]}}, seed=3)).jobs
    assert all(1e-300 <= j["lr"] <= 10 and math.isfinite(j["lr"]) for j in wide)


def test_count_blames_the_part_that_multiplies() -> None:
    assert count_jobs(sweep(random={"n": 7, "lr": [1]}, repeats=3)) == (21, "random")
    assert count_jobs(sweep(repeats=4)) == (4, "repeats")
    assert count_jobs(sweep(seeds=[1, 2])) == (2, "seeds")


@given(
    levels=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    draws=st.integers(0, 3),
    repeats=st.integers(0, 3),
    seed=st.integers(0, 2**63 - 1),
)
def test_expansion_size_is_the_counted_product(
    levels: list[int], draws: int, repeats: int, seed: int
) -> None:
    fields = ["lr", "momentum", "H"]
    grid = {fields[i]: [0.1 * (j + 1) for j in range(n)] for i, n in enumerate(levels)}
    request: dict = {"name": "s", "base": {"stage": "optim"}, "grid": grid, "seed": seed}
    if draws:
        request["random"] = {"n": draws, "init": ["normal", "zeros"]}
    if repeats:
        request["repeats"] = repeats
    checked = validate_sweep(request)
    expansion = expand(checked)
    total, _ = count_jobs(checked)
    assert len(expansion.jobs) == total
    assert expansion.jobs == expand(checked).jobs
    assert len({j["seed"] for j in expansion.jobs}) == max(repeats, 1)
