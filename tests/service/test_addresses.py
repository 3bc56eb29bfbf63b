"""Which bind addresses only this machine can reach."""

from __future__ import annotations

import pytest

from service.addresses import is_loopback


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost", "LocalHost"]
)
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "[::]", "10.0.0.5", "192.168.1.2", "2001:db8::1", "example.com", ""]
)
def test_addresses_others_can_reach(host: str) -> None:
    assert not is_loopback(host)
