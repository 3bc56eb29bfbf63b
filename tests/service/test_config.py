"""Configuration from TRAINQ_* variables: each type read as itself, switches by their word."""

from __future__ import annotations

import pytest

from service.config import Config


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", False), ("false", False), ("off", False), ("1", True), ("TRUE", True), ("", True)],
)
def test_a_switch_reads_its_word_not_pythons_truth(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv("TRAINQ_REFILL_STACKS", raw)
    assert Config.from_env().refill_stacks is expected


def test_numbers_are_read_as_their_defaults_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINQ_MAX_STACK", "7")
    monkeypatch.setenv("TRAINQ_LEASE_SECONDS", "2.5")
    config = Config.from_env()
    assert (config.max_stack, config.lease_seconds) == (7, 2.5)
