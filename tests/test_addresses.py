"""host:port parsing and formatting, the one rule every stage uses."""

import pytest

from tfs_bench import addresses
from tfs_bench.errors import ConfigError


@pytest.mark.parametrize(
    "text, host, port",
    [("127.0.0.1:8500", "127.0.0.1", 8500), (" localhost:1 ", "localhost", 1), ("[::1]:65535", "::1", 65535)],
)
def test_addresses_parse_to_host_and_port(text, host, port):
    assert addresses.parse(text) == addresses.Address(host, port)
    assert addresses.normalize(text) == text.strip()


@pytest.mark.parametrize(
    "text, problem",
    [
        ("127.0.0.1", "is not host:port"),
        (":8500", "is not host:port"),
        ("host:port", "is not host:port"),
        ("[]:1", "is not host:port"),
        ("host:0", "must be in 1..65535"),
        ("host:65536", "must be in 1..65535"),
        ("::1:8500", "IPv6 address in brackets"),
        ("a b:1", "is not host:port"),
    ],
)
def test_malformed_addresses_name_what_was_wrong(text, problem):
    with pytest.raises(ConfigError, match=problem) as raised:
        addresses.parse(text, "target")
    assert str(raised.value).startswith(("target", "port of target"))


def test_ipv6_hosts_are_written_in_brackets():
    assert addresses.join("::1", 9000) == "[::1]:9000"
    assert addresses.join("localhost", 9000) == "localhost:9000"
    assert str(addresses.Address("::1", 9000)) == "[::1]:9000"
    assert addresses.Address("::1", 9000).url("/metrics") == "http://[::1]:9000/metrics"
    assert addresses.Address("h", 1).url() == "http://h:1"


@pytest.mark.parametrize("port", [0, 65536, True, "8500", 1.0])
def test_ports_must_be_integers_in_range(port):
    with pytest.raises(ConfigError, match="must be in 1..65535"):
        addresses.check_port(port, "port")
