"""host:port addresses, parsed and written one way for every stage.

A host is a name or an IPv4 address, or an IPv6 address written in brackets (`[::1]:8500`);
`Address.host` holds it without brackets, as sockets and HTTP clients want it.
"""

from __future__ import annotations

import dataclasses

from tfs_bench.errors import ConfigError

MAX_PORT = 65535
EXAMPLE = "127.0.0.1:8500"


def check_port(port, what: str) -> None:
    """Raises ConfigError unless `port` is an int in 1..65535."""
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= MAX_PORT:
        raise ConfigError(f"{what} must be in 1..{MAX_PORT}, got {port!r}")


def join(host: str, port: int) -> str:
    """host:port, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclasses.dataclass(frozen=True)
class Address:
    host: str  # an IPv6 host without its brackets
    port: int

    def __post_init__(self):
        if not self.host or any(c in self.host for c in "[]/ "):
            raise ConfigError(f"bad host {self.host!r}")
        check_port(self.port, f"port of {self.host}")

    def __str__(self) -> str:
        return join(self.host, self.port)

    def url(self, path: str = "", scheme: str = "http") -> str:
        return f"{scheme}://{self}/{path.lstrip('/')}" if path else f"{scheme}://{self}"


def parse(text: str, what: str = "address") -> Address:
    """'host:port' or '[ipv6]:port' (blanks around it ignored); ConfigError naming `what` otherwise."""
    stripped = text.strip()
    host, sep, port = stripped.rpartition(":")
    if ":" in host:
        if not (host.startswith("[") and host.endswith("]")):
            raise ConfigError(f"{what} {text!r}: write an IPv6 address in brackets, e.g. [::1]:8500")
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or any(c in host for c in "[]/ "):
        raise ConfigError(f"{what} {text!r} is not host:port, e.g. {EXAMPLE}")
    check_port(int(port), f"port of {what} {text!r}")
    return Address(host, int(port))


def normalize(text: str, what: str = "address") -> str:
    """The checked address as host:port text (blanks removed)."""
    return str(parse(text, what))
