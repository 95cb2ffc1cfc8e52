"""Failed API-key lookups are counted per address: an IPv6 client counts by its /64 (the HTTP
paths that count them are tested in tests/test_api_key_throttle.py)."""

from __future__ import annotations

from tenancy import throttle


def test_address_key__ipv6_counts_by_its_64_network():
    # Given two addresses of one IPv6 /64 and one IPv4 address
    # When their counting keys are taken
    # Then the /64 is one key and IPv4 is itself
    assert throttle.address_key("2001:db8:1:2::1") == throttle.address_key("2001:db8:1:2:ffff::9")
    assert throttle.address_key("2001:db8:1:2::1") != throttle.address_key("2001:db8:1:3::1")
    assert throttle.address_key("203.0.113.7") == "203.0.113.7"
    assert throttle.address_key(None) == "unknown"
