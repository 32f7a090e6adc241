"""``address``: the one ``host:port`` parser, and ``[host:]port`` for the exporters' flags."""

from __future__ import annotations

import pytest

from pyproxy import address


def test_parse_endpoint_takes_a_bare_port_on_the_default_host() -> None:
    assert address.parse_endpoint("9121") == ("127.0.0.1", 9121)
    assert address.parse_endpoint(":9121") == ("127.0.0.1", 9121)
    assert address.parse_endpoint("9121", default_host="127.0.0.2") == ("127.0.0.2", 9121)
    assert address.parse_endpoint("127.0.0.3:22123") == ("127.0.0.3", 22123)


@pytest.mark.parametrize("text", ["99999", "host:0", "bad host:1", "127.0.0.1:", ""])
def test_parse_endpoint_refuses_what_parse_refuses(text: str) -> None:
    with pytest.raises(address.AddressError):
        address.parse_endpoint(text)
