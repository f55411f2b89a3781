"""The address check against the IANA special-purpose registries (server/connectors/ssrf.py)."""

from __future__ import annotations

import ipaddress

import pytest

from server.connectors.ssrf import SPECIAL_PURPOSE, AddressPolicy, AddressRefused, is_public

# Entries whose addresses are checked through the IPv4 address they carry instead.
CARRIERS = {"64:ff9b::/96", "2002::/16"}


@pytest.mark.parametrize(("network", "reachable"), SPECIAL_PURPOSE)
def test_every_registry_entry_decides_its_own_addresses(network, reachable):
    if network in CARRIERS:
        pytest.skip("carries an IPv4 address: see test_embedded_ipv4_addresses_are_checked")
    net = ipaddress.ip_network(network)
    # The first and the last address of the entry; a more specific entry inside may decide otherwise,
    # so compare against the most specific entry containing the address.
    for address in (net.network_address, net.broadcast_address):
        containing = [
            (ipaddress.ip_network(n), r)
            for n, r in SPECIAL_PURPOSE
            if ipaddress.ip_network(n).version == address.version and address in ipaddress.ip_network(n)
        ]
        expected = max(containing, key=lambda entry: entry[0].prefixlen)[1]
        assert is_public(address) is expected, (network, str(address))


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "192.0.0.9",
        "192.0.0.10",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "2001:1::1",
        "2001:20::1",
    ],
)
def test_globally_reachable_addresses_pass(address):
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        # Where Python 3.11's is_global says True.
        "192.0.0.8",
        "3fff::1",
        "5f00::1",
        "100:0:0:1::1",
        "64:ff9b:1::1",
        "fec0::1",
        "ff02::1",
        "4000::1",
        "::7f00:1",
        # And the classics.
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "100.64.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "2001:db8::1",
    ],
)
def test_special_purpose_addresses_are_refused(address):
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2001:0:4136:e378:8000:63bf:80ff:fffe"],
)
def test_embedded_ipv4_addresses_are_checked(address):
    # Mapped, NAT64, 6to4 and Teredo (client 127.0.0.1) forms of internal IPv4 addresses.
    assert not is_public(ipaddress.ip_address(address))


def test_a_scoped_ipv6_address_is_refused():
    assert not is_public(ipaddress.IPv6Address("2606:4700::1%eth0"))


def test_names_that_are_not_names_are_refused_without_a_500():
    # The resolver raises UnicodeError for a label over 63 characters: now an unresolvable name.
    policy = AddressPolicy(allow_private=False)
    assert policy.check_url("https://" + "a" * 64 + ".example/") == "has a host name that does not resolve"
    assert policy.check_url("https://example.com:99999/") == "is not a valid URL"


def test_connect_time_check_uses_the_registry():
    policy = AddressPolicy(allow_private=False, resolver=lambda host, port: ["3fff::1"])
    with pytest.raises(AddressRefused):
        policy.addresses("looks-public.example", 443)
    allowed = AddressPolicy(allow_private=False, resolver=lambda host, port: ["2606:4700::1"])
    assert allowed.addresses("public.example", 443) == ["2606:4700::1"]
