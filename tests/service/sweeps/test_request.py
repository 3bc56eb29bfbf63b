"""The sweep request model: each bad key named by its path, and its schema says what it takes."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from service.jobspec import SpecError
from service.sweeps.request import LogUniform, SweepRequest, validate_sweep


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"grid": {"lr": []}}, "grid.lr"),
        ({"grid": {"bogus": [1]}}, "grid.bogus"),
        ({"grid": [1, 2]}, "grid"),
        ({"random": {"n": 0, "lr": [1]}}, "random.n"),
        ({"random": {"n": 2, "lr": {"log_uniform": [0, 1]}}}, "random.lr"),
        ({"random": {"n": 2, "lr": {"log_uniform": [1, 0.1]}}}, "random.lr"),
        ({"random": {"n": 2, "lr": {"normal": [1, 0.1]}}}, "random.lr"),
        ({"random": {"n": 2}}, "random.space"),
        ({"grid": {"lr": [1]}, "random": {"n": 2, "lr": [1]}}, "random.lr"),
        ({"seeds": [1], "repeats": 2}, "repeats"),
        ({"seeds": [-1]}, "seeds.0"),
        ({"seeds": [1], "grid": {"seed": [1, 2]}}, "seeds"),
        ({"repeats": 0}, "repeats"),
        ({"seed": "x"}, "seed"),
        ({"skip_invalid": "yes"}, "skip_invalid"),
        ({"base": {"stage": "optim", "bogus": 1}}, "base.bogus"),
        ({"bogus": 1}, "bogus"),
        ({"name": ""}, "name"),
        ({"early_stop": {"rule": "asha", "grace": 0}}, "early_stop.grace"),
        ({"early_stop": {"rule": "asha", "grace": 2, "reduction": 1}}, "early_stop.reduction"),
        ({"early_stop": {"rule": "median", "warmup": -1}}, "early_stop.warmup"),
        ({"early_stop": {"rule": "median", "grace": 2}}, "early_stop.grace"),
        ({"early_stop": {"rule": "hyperband"}}, "early_stop"),
        ({"early_stop": {"grace": 2}}, "early_stop"),
    ],
)
def test_bad_requests_name_the_key(request_: dict, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_sweep({"name": "s", **request_})
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"random": {"n": 2, "space": {"bogus": [1]}}}, "random.space.bogus"),
        ({"random": {"n": 2, "space": {"lr": {"uniform": [2, 1]}}}}, "random.space.lr"),
        ({"random": {"n": 2, "space": {}}}, "random.space"),
        ({"random": {"n": 2, "space": {"lr": [1]}, "init": ["zeros"]}}, "random.space"),
        ({"random": {"n": 2, "lr": {"uniform": [0, float("inf")]}}}, "random.lr"),
        ({"random": {"n": 2, "lr": {"uniform": [0, 1], "log_uniform": [1, 2]}}}, "random.lr"),
        ({"random": {"n": True, "lr": [1]}}, "random.n"),
        ({"grid": {"lr": [1]}, "random": {"n": 2, "space": {"lr": [1]}}}, "random.space.lr"),
        ({"seeds": [True]}, "seeds.0"),
        ({"seeds": []}, "seeds"),
        ({"repeats": 2, "random": {"n": 2, "seed": [1, 2]}}, "seeds"),
        ({"repeats": 1.0}, "repeats"),
        ({"base": None}, "base"),
        ({"name": "a\x00b"}, "name"),
        ({"name": None}, "name"),
        ({"fused": 1}, "fused"),
        ({"fused": "Auto"}, "fused"),
    ],
)
def test_more_bad_requests_name_the_path_to_change(request_: dict, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_sweep({"name": "s", **request_})
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")


def test_not_an_object_names_no_field() -> None:
    with pytest.raises(SpecError) as caught:
        validate_sweep([{"name": "s"}])
    assert caught.value.field is None


def test_rules_across_keys_say_what_to_change() -> None:
    with pytest.raises(SpecError) as caught:
        validate_sweep({"name": "s", "seeds": [1], "repeats": 2})
    assert caught.value.message == "repeats: give seeds or repeats, not both"
    with pytest.raises(SpecError) as caught:
        validate_sweep({"name": "s", "random": {"n": 2, "lr": {"log_uniform": [0, 1]}}})
    assert caught.value.message == (
        "random.lr: log_uniform takes [low, high] with low <= high and low > 0"
    )


def test_both_forms_of_random_name_the_same_space() -> None:
    short = validate_sweep({"name": "s", "random": {"n": 3, "lr": {"log_uniform": [1e-4, 1]}}})
    long = validate_sweep(
        {"name": "s", "random": {"n": 3, "space": {"lr": {"log_uniform": [1e-4, 1]}}}}
    )
    assert short.random is not None
    assert long.random is not None
    assert (
        short.random.fields() == long.random.fields() == {"lr": LogUniform(log_uniform=[1e-4, 1])}
    )


VALID = [
    {"name": "s"},
    {"name": "s", "base": {"stage": "optim"}, "grid": {"lr": [0.1, 0.2]}, "seeds": [1, 2]},
    {"name": "s", "random": {"n": 4, "lr": {"log_uniform": [1e-4, 1]}, "init": ["zeros"]}},
    {"name": "s", "random": {"n": 4, "space": {"momentum": {"uniform": [0.5, 0.9]}}}},
    {"name": "s", "grid": None, "random": None, "seeds": None, "repeats": 3, "seed": 7},
    {"name": "s", "skip_invalid": True, "fused": False},
    {"name": "s", "early_stop": {"rule": "asha", "grace": 4, "reduction": 2}},
    {"name": "s", "early_stop": {"rule": "median", "warmup": 10}},
    {"name": "s", "fused": True},
    {"name": "s", "fused": "auto"},
]
# Wrong in shape, not only by a rule across keys: the schema refuses them too.
MALFORMED = [
    {},
    {"name": "s", "bogus": 1},
    {"name": "s", "base": {"bogus": 1}},
    {"name": "s", "grid": {"lr": []}},
    {"name": "s", "grid": {"bogus": [1]}},
    {"name": "s", "random": {"n": 0, "lr": [1]}},
    {"name": "s", "random": {"n": 2, "bogus": [1]}},
    {"name": "s", "random": {"n": 2, "lr": {"normal": [0, 1]}}},
    {"name": "s", "random": {"n": 2, "space": {"bogus": [1]}}},
    {"name": "s", "seeds": [-1]},
    {"name": "s", "repeats": 0},
    {"name": "s", "seed": "x"},
    {"name": "s", "fused": "yes"},
    {"name": "s", "early_stop": {"rule": "asha", "grace": 0}},
    {"name": "s", "early_stop": {"rule": "median", "grace": 3}},
    {"name": "s", "fused": None},
    {"name": ""},
]


@pytest.mark.parametrize("body", VALID)
def test_what_validates_matches_its_schema(body: dict[str, Any]) -> None:
    validate_sweep(body)
    jsonschema.Draft202012Validator(SweepRequest.model_json_schema()).validate(body)


@pytest.mark.parametrize("body", MALFORMED)
def test_what_is_refused_is_refused_by_its_schema(body: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        validate_sweep(body)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SweepRequest.model_json_schema()).validate(body)


def test_fused_defaults_to_auto() -> None:
    assert validate_sweep({"name": "s"}).fused == "auto"


@pytest.mark.parametrize(
    ("body", "field", "meant"),
    [
        ({"grdi": {"lr": [1]}}, "grdi", "grid"),
        ({"base": {"stage": "nn", "optimiser": "sgd"}}, "base.optimiser", "optimizer"),
        (
            {"search": {"method": "tpe", "n": 2, "space": {"lr": [1]}, "paralel": 2}},
            "search.paralel",
            "parallel",
        ),
    ],
)
def test_a_near_miss_among_a_sweeps_keys_is_named(body: dict, field: str, meant: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_sweep({"name": "s", **body})
    assert caught.value.field == field
    assert caught.value.message.endswith(f"(did you mean `{meant}`?)")


@pytest.mark.parametrize("kind", ["log_uniform", "uniform"])
def test_a_range_in_a_grid_points_to_random_and_search(kind: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_sweep({"name": "s", "grid": {"lr": {kind: [1e-4, 1e-1]}}})
    assert caught.value.field == "grid.lr"
    assert f"to draw lr from {kind}" in caught.value.message
    assert "`random:`" in caught.value.message
    assert "`search:`" in caught.value.message
