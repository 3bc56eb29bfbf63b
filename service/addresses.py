"""Whether an address the API binds is reachable only from this machine."""

from __future__ import annotations

import ipaddress

# Names that mean this machine only; every other name may resolve anywhere.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; False for 0.0.0.0, ::, other names and addresses."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        # A host name other than localhost: it may resolve to a public address.
        return False
