"""The sweep policy: what a stored request decides, parsed in one place."""

from __future__ import annotations

import pytest

from service.sweeps.policy import SweepPolicy
from service.sweeps.request import Asha, Median


def test_rung_steps_are_the_asha_rule_s_own() -> None:
    # grace 4, reduction 2 over 20 steps: 4, 8, 16 (32 is past the end; the last step never).
    asha = {"early_stop": {"rule": "asha", "grace": 4, "reduction": 2}}
    assert SweepPolicy.of(asha).rung_steps(20) == [4, 8, 16]
    assert SweepPolicy.of(asha).rung_steps(17) == [4, 8]
    assert SweepPolicy.of({"early_stop": {"rule": "median", "warmup": 3}}).rung_steps(20) == []
    assert SweepPolicy.of({}).rung_steps(20) == []


def test_the_stored_fused_choice_is_read_and_anything_else_sends_singly() -> None:
    assert SweepPolicy.of({"fused": True}).fused is True
    assert SweepPolicy.of({"fused": "auto"}).fused == "auto"
    # A sweep stored before `auto` existed has no `fused`: unfused, the default then.
    assert SweepPolicy.of({}).fused is False
    assert SweepPolicy.of({"fused": "yes"}).fused is False
    assert SweepPolicy.of(None) == SweepPolicy(fused=False, early_stop=None, search=False)


@pytest.mark.parametrize(
    ("request_", "rule", "search"),
    [
        ({"early_stop": {"rule": "asha", "grace": 4}}, Asha, False),
        ({"early_stop": {"rule": "median"}, "search": {"n": 4}}, Median, True),
        ({"grid": {"lr": [0.1]}}, type(None), False),
    ],
)
def test_the_rule_and_search_are_read_from_the_stored_request(
    request_: dict[str, object], rule: type, search: bool
) -> None:
    policy = SweepPolicy.of(request_)
    assert isinstance(policy.early_stop, rule)
    assert policy.search is search
