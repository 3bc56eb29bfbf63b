"""Validation of every job field: defaults per stage, types, ranges, cross-field rules, caps."""

from __future__ import annotations

import pytest

from service.jobspec import MAX_SEED, Limits, SpecError, validate_job, work_flops


def test_defaults_for_the_seed_stages() -> None:
    spec = validate_job({"stage": "tensors"})
    assert spec["optimizer"] == "sgd"
    assert spec["init"] == "normal"
    assert spec["lr"] == 1e-6
    assert (spec["N"], spec["D_in"], spec["H"], spec["D_out"]) == (64, 1000, 100, 10)
    assert spec["iterations"] == 500
    assert spec["device"] == "auto"
    assert spec["dtype"] == "float32"
    assert 0 <= spec["seed"] <= MAX_SEED


def test_defaults_for_module_stage() -> None:
    spec = validate_job({"stage": "module"})
    assert (spec["optimizer"], spec["init"], spec["lr"]) == ("adam", "default", 1e-4)


def test_seed_is_drawn_per_submission() -> None:
    seeds = {validate_job({"stage": "nn"})["seed"] for _ in range(5)}
    assert len(seeds) == 5


def test_explicit_values_are_kept() -> None:
    fields = {
        "stage": "optim",
        "optimizer": "nesterov",
        "momentum": 0.8,
        "weight_decay": 0.01,
        "init": "orthogonal",
        "lr": 0.5,
        "iterations": 7,
        "N": 3,
        "D_in": 4,
        "H": 5,
        "D_out": 6,
        "seed": MAX_SEED,
        "device": "cpu",
        "dtype": "float64",
        "name": "run one",
        "tags": ["a", "b"],
    }
    assert validate_job(dict(fields)) == fields


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "stage"),
        ({"stage": "conv"}, "stage"),
        ({"stage": "optim", "optimizer": "lbfgs"}, "optimizer"),
        ({"stage": "tensors", "optimizer": "adam"}, "optimizer"),
        ({"stage": "autograd", "optimizer": "momentum"}, "optimizer"),
        ({"stage": "nn", "optimizer": "rmsprop"}, "optimizer"),
        ({"stage": "optim", "optimizer": "adam", "momentum": 0.9}, "momentum"),
        ({"stage": "optim", "optimizer": "momentum", "momentum": 1.5}, "momentum"),
        ({"stage": "tensors", "weight_decay": 0.1}, "weight_decay"),
        ({"stage": "optim", "weight_decay": -1.0}, "weight_decay"),
        ({"stage": "nn", "init": "he"}, "init"),
        ({"stage": "nn", "lr": 0}, "lr"),
        ({"stage": "nn", "lr": -1e-3}, "lr"),
        ({"stage": "nn", "lr": 10.5}, "lr"),
        ({"stage": "nn", "lr": "0.1"}, "lr"),
        ({"stage": "nn", "lr": float("nan")}, "lr"),
        ({"stage": "nn", "lr": float("inf")}, "lr"),
        ({"stage": "nn", "iterations": 0}, "iterations"),
        ({"stage": "nn", "iterations": 100_001}, "iterations"),
        ({"stage": "nn", "iterations": 2.5}, "iterations"),
        ({"stage": "nn", "iterations": True}, "iterations"),
        ({"stage": "nn", "N": 0}, "N"),
        ({"stage": "nn", "D_in": -3}, "D_in"),
        ({"stage": "nn", "H": "100"}, "H"),
        ({"stage": "nn", "D_out": None}, "D_out"),
        ({"stage": "nn", "seed": -1}, "seed"),
        ({"stage": "nn", "seed": 2**63}, "seed"),
        ({"stage": "nn", "device": "tpu"}, "device"),
        ({"stage": "nn", "dtype": "float16"}, "dtype"),
        ({"stage": "nn", "name": ""}, "name"),
        ({"stage": "nn", "name": "x" * 201}, "name"),
        ({"stage": "nn", "tags": "a"}, "tags"),
        ({"stage": "nn", "tags": ["a", "a"]}, "tags"),
        ({"stage": "nn", "tags": ["has space"]}, "tags.0"),
        ({"stage": "nn", "tags": [f"t{i}" for i in range(33)]}, "tags"),
        ({"stage": "nn", "learning_rate": 1e-3}, "learning_rate"),
    ],
)
def test_bad_field_is_named(fields: dict, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_job(fields)
    assert caught.value.field == field
    assert field.split(".")[0] in caught.value.message


def test_not_an_object() -> None:
    with pytest.raises(SpecError):
        validate_job([{"stage": "nn"}])


def test_caps_are_configurable() -> None:
    limits = Limits(max_iterations=10, max_dim=50, max_elements=10_000, max_work=1e9)
    assert validate_job(
        {"stage": "nn", "iterations": 10, "N": 8, "D_in": 16, "H": 8, "D_out": 4}, limits
    )
    with pytest.raises(SpecError) as caught:
        validate_job(
            {"stage": "nn", "iterations": 11, "N": 8, "D_in": 16, "H": 8, "D_out": 4}, limits
        )
    assert caught.value.field == "iterations"
    with pytest.raises(SpecError) as caught:
        validate_job(
            {"stage": "nn", "iterations": 1, "N": 8, "D_in": 51, "H": 8, "D_out": 4}, limits
        )
    assert caught.value.field == "D_in"
    with pytest.raises(SpecError) as caught:
        validate_job(
            {"stage": "nn", "iterations": 1, "N": 50, "D_in": 50, "H": 50, "D_out": 50}, limits
        )
    assert caught.value.field == "N"


def test_work_cap_counts_iterations_times_flops() -> None:
    # The seed's default job is ~13 GFLOP: 500 iterations of five matrix products.
    assert work_flops(500, 64, 1000, 100, 10) == pytest.approx(1.3e10, rel=0.02)
    limits = Limits(max_work=work_flops(500, 64, 1000, 100, 10))
    assert validate_job({"stage": "nn"}, limits)
    with pytest.raises(SpecError) as caught:
        validate_job({"stage": "nn", "iterations": 501}, limits)
    assert caught.value.field == "iterations"


@pytest.mark.parametrize(
    ("body", "field", "meant"),
    [
        ({"stage": "nn", "optimiser": "sgd"}, "optimiser", "optimizer"),
        ({"stage": "nn", "learning_rate": 1e-3}, "learning_rate", None),
        ({"stage": "optim", "optimizer": "adma"}, "optimizer", "adam"),
    ],
)
def test_a_near_miss_is_named(body: dict, field: str, meant: str | None) -> None:
    with pytest.raises(SpecError) as caught:
        validate_job(body)
    assert caught.value.field == field
    if meant:
        assert caught.value.message.endswith(f"(did you mean `{meant}`?)")
    else:  # nothing close: no guess
        assert "did you mean" not in caught.value.message
