"""Private "hosts" for tests: network namespaces joined to this one by veth pairs.

Each host gets its own namespace and a /24 under 10.213.0.0/16 that exists only on the two ends
of its veth pair: the root end (x.1) is where the test's servers listen, the host end (x.2) is
the host's only way out. No route leaves these links, so nothing reaches any other network.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PREFIX = "10.213"
LOCK_PATH = Path("/tmp/trainq-netns.lock")


def _ip(*args: str) -> str:
    """Run `ip ARGS`, raising with its stderr on failure."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    return None


def _subnets_in_use() -> set[int]:
    """Third octets of 10.213.x.y addresses already on this namespace's links."""
    found = re.findall(rf"inet {re.escape(PREFIX)}\.(\d+)\.", _ip("-o", "-4", "addr", "show"))
    return {int(octet) for octet in found}


@dataclass
class Host:
    """One namespace with a veth pair to the root namespace."""

    name: str
    subnet: int
    root_link: str

    @property
    def server_address(self) -> str:
        """The root namespace's end: where this host reaches the shared services."""
        return f"{PREFIX}.{self.subnet}.1"

    @property
    def address(self) -> str:
        """This host's own address."""
        return f"{PREFIX}.{self.subnet}.2"

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The /24 this host shares with the root namespace."""
        return ipaddress.IPv4Network(f"{PREFIX}.{self.subnet}.0/24")

    def command(self, hostname: str | None = None) -> list[str]:
        """A prefix that runs a command inside this host, with its own hostname when given."""
        prefix = ["ip", "netns", "exec", self.name]
        if hostname is None:
            return prefix
        # A UTS namespace of its own: `hostname` (and so Celery's %h) differs per host.
        rename = 'hostname "$0" && exec "$@"'
        return [*prefix, "unshare", "--uts", "--", "sh", "-c", rename, hostname]


def _create(name: str, subnet: int) -> Host:
    """Make the namespace, the veth pair and both addresses."""
    host = Host(name=name, subnet=subnet, root_link=f"{name}r")
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host.root_link, "type", "veth", "peer", "name", f"{name}h")
        _ip("link", "set", f"{name}h", "netns", name)
        _ip("addr", "add", f"{host.server_address}/24", "dev", host.root_link)
        _ip("link", "set", host.root_link, "up")
        _ip("-n", name, "addr", "add", f"{host.address}/24", "dev", f"{name}h")
        _ip("-n", name, "link", "set", f"{name}h", "up")
        _ip("-n", name, "link", "set", "lo", "up")
    except RuntimeError:
        _delete(host)
        raise
    return host


def _delete(host: Host) -> None:
    """Remove the veth pair (both ends go together) and the namespace."""
    with contextlib.suppress(RuntimeError):
        _ip("link", "del", host.root_link)
    with contextlib.suppress(RuntimeError):
        _ip("netns", "del", host.name)


@contextlib.contextmanager
def private_hosts(count: int) -> Iterator[list[Host]]:
    """`count` namespaces, each on its own free 10.213.x.0/24; all removed on exit."""
    if count < 1 or count > 8:
        raise ValueError("between 1 and 8 hosts")
    hosts: list[Host] = []
    try:
        # Two test runs at once must not pick the same subnet or names.
        with open(LOCK_PATH, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            free = sorted(set(range(1, 255)) - _subnets_in_use())
            for index in range(count):
                # Interface names are capped at 15 bytes: "tq<pid>" + letter + r/h fits.
                name = f"tq{os.getpid() % 10**8}{chr(ord('a') + index)}"
                hosts.append(_create(name, free[index]))
        yield hosts
    finally:
        for host in hosts:
            _delete(host)
