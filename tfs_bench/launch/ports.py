"""Whether a server's ports are free, and free ports for servers the suite starts itself."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from tfs_bench import addresses
from tfs_bench.errors import LaunchError


def port_free(host: str, port: int) -> str | None:
    """None when a server could listen on host:port now, else why not.

    SO_REUSEADDR, as servers set it: a port in TIME_WAIT is free, a listening one is not.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def free_port_base(servers: int, host: str = "127.0.0.1") -> int:
    """A --port_base whose plan of `servers` servers (ports base..base+2*servers-1) is free now."""
    count = 2 * servers
    for _ in range(100):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
            base = probe.getsockname()[1] & ~1  # even, as a planner's gRPC ports are
        if base + count <= 65536 and all(port_free(host, p) is None for p in range(base, base + count)):
            return base
    raise LaunchError(f"found no {count} consecutive free ports on {host}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for an in-process server, or an address that must refuse)."""
    return free_port_base(1, host)


def check_ports_free(server_name: str, host: str, ports: Iterable[int]) -> None:
    """Raises LaunchError for a port already taken: readiness would probe someone else's server."""
    for port in ports:
        if port and (why := port_free(host, port)):
            raise LaunchError(
                f"cannot start server {server_name!r}: {addresses.join(host, port)} is not free ({why}); "
                "is an earlier server still running?"
            )
