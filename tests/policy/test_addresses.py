"""Address classification: every special range refused with its reason, embedded forms too."""

from __future__ import annotations

import ipaddress

import pytest

from vivified.policy.addresses import (
    BLOCKED_RANGES,
    IPNetwork,
    classify_address,
    parse_networks,
)

ADDRESSES = [
    # public
    pytest.param("8.8.8.8", "public_address", id="v4-public"),
    pytest.param("1.1.1.1", "public_address", id="v4-public-cloudflare"),
    pytest.param("100.63.255.255", "public_address", id="v4-just-below-cgnat"),
    pytest.param("100.128.0.0", "public_address", id="v4-just-above-cgnat"),
    pytest.param("172.15.255.255", "public_address", id="v4-just-below-172-16"),
    pytest.param("172.32.0.0", "public_address", id="v4-just-above-172-31"),
    pytest.param("223.255.255.255", "public_address", id="v4-just-below-multicast"),
    pytest.param("2001:4860:4860::8888", "public_address", id="v6-public"),
    pytest.param("2606:4700:4700::1111", "public_address", id="v6-public-cloudflare"),
    pytest.param("2001:200::1", "public_address", id="v6-just-above-2001-23"),
    # IPv4 special ranges
    pytest.param("0.0.0.0", "blocked_unspecified", id="v4-unspecified"),
    pytest.param("0.1.2.3", "blocked_unspecified", id="v4-this-network"),
    pytest.param("127.0.0.1", "blocked_loopback", id="v4-loopback"),
    pytest.param("127.255.255.254", "blocked_loopback", id="v4-loopback-top"),
    pytest.param("10.0.0.1", "blocked_private", id="v4-private-10"),
    pytest.param("172.16.0.1", "blocked_private", id="v4-private-172-16"),
    pytest.param("172.31.255.255", "blocked_private", id="v4-private-172-31"),
    pytest.param("192.168.1.1", "blocked_private", id="v4-private-192-168"),
    pytest.param("169.254.1.1", "blocked_link_local", id="v4-link-local"),
    pytest.param("169.254.169.254", "blocked_metadata", id="v4-metadata-aws-gcp-azure"),
    pytest.param("169.254.170.2", "blocked_metadata", id="v4-metadata-ecs"),
    pytest.param("169.254.170.23", "blocked_metadata", id="v4-metadata-eks-pod-identity"),
    pytest.param("100.100.100.200", "blocked_metadata", id="v4-metadata-alibaba"),
    pytest.param("192.0.0.192", "blocked_metadata", id="v4-metadata-oracle"),
    pytest.param("100.64.0.1", "blocked_cgnat", id="v4-cgnat"),
    pytest.param("100.127.255.255", "blocked_cgnat", id="v4-cgnat-top"),
    pytest.param("198.18.0.1", "blocked_benchmark", id="v4-benchmark"),
    pytest.param("198.19.255.255", "blocked_benchmark", id="v4-benchmark-top"),
    pytest.param("192.0.2.1", "blocked_documentation", id="v4-test-net-1"),
    pytest.param("198.51.100.1", "blocked_documentation", id="v4-test-net-2"),
    pytest.param("203.0.113.1", "blocked_documentation", id="v4-test-net-3"),
    pytest.param("192.0.0.8", "blocked_ietf", id="v4-ietf-assignments"),
    pytest.param("192.88.99.1", "blocked_6to4", id="v4-6to4-relay-anycast"),
    pytest.param("224.0.0.1", "blocked_multicast", id="v4-multicast"),
    pytest.param("239.255.255.250", "blocked_multicast", id="v4-multicast-ssdp"),
    pytest.param("240.0.0.1", "blocked_reserved", id="v4-reserved"),
    pytest.param("255.255.255.254", "blocked_reserved", id="v4-reserved-top"),
    pytest.param("255.255.255.255", "blocked_broadcast", id="v4-broadcast"),
    # IPv6 special ranges
    pytest.param("::", "blocked_unspecified", id="v6-unspecified"),
    pytest.param("::1", "blocked_loopback", id="v6-loopback"),
    pytest.param("fe80::1", "blocked_link_local", id="v6-link-local"),
    pytest.param("fe80::1%eth0", "blocked_link_local", id="v6-link-local-with-zone"),
    pytest.param("fd00:ec2::254", "blocked_metadata", id="v6-metadata-aws"),
    pytest.param("fd00:ec2::23", "blocked_metadata", id="v6-metadata-eks"),
    pytest.param("fc00::1", "blocked_unique_local", id="v6-unique-local-fc"),
    pytest.param("fd12:3456::1", "blocked_unique_local", id="v6-unique-local-fd"),
    pytest.param("fec0::1", "blocked_site_local", id="v6-site-local"),
    pytest.param("ff02::1", "blocked_multicast", id="v6-multicast"),
    pytest.param("2001:db8::1", "blocked_documentation", id="v6-documentation"),
    pytest.param("3fff::1", "blocked_documentation", id="v6-documentation-3fff"),
    pytest.param("100::1", "blocked_discard", id="v6-discard"),
    pytest.param("2001:10::1", "blocked_orchid", id="v6-orchid"),
    pytest.param("2001:20::1", "blocked_orchid", id="v6-orchid-v2"),
    pytest.param("2001:2::1", "blocked_benchmark", id="v6-benchmark"),
    pytest.param("2001:3::1", "blocked_ietf", id="v6-ietf-amt"),
    pytest.param("2001:1::1", "blocked_ietf", id="v6-ietf-pcp-anycast"),
    pytest.param("64:ff9b:1::1", "blocked_nat64", id="v6-nat64-local-use"),
    pytest.param("::2:3:4", "blocked_reserved", id="v6-unassigned-low"),
    pytest.param("5f00::1", "blocked_reserved", id="v6-srv6-outside-2000-3"),
    pytest.param("4000::1", "blocked_reserved", id="v6-outside-2000-3"),
    pytest.param("e000::1", "blocked_reserved", id="v6-unassigned-high"),
    # IPv4-mapped ::ffff:a.b.c.d: the embedded reason, or refused as mapped
    pytest.param("::ffff:127.0.0.1", "blocked_loopback", id="mapped-loopback"),
    pytest.param("::ffff:10.0.0.1", "blocked_private", id="mapped-private"),
    pytest.param("::ffff:169.254.169.254", "blocked_metadata", id="mapped-metadata"),
    pytest.param("::ffff:0.0.0.0", "blocked_unspecified", id="mapped-unspecified"),
    pytest.param("::ffff:8.8.8.8", "blocked_ipv4_mapped", id="mapped-public"),
    # IPv4-compatible ::a.b.c.d
    pytest.param("::127.0.0.1", "blocked_loopback", id="compat-loopback"),
    pytest.param("::192.168.0.1", "blocked_private", id="compat-private"),
    pytest.param("::0.0.0.2", "blocked_unspecified", id="compat-this-network"),
    pytest.param("::8.8.8.8", "blocked_ipv4_compat", id="compat-public"),
    # NAT64 well-known prefix
    pytest.param("64:ff9b::10.0.0.1", "blocked_private", id="nat64-private"),
    pytest.param("64:ff9b::169.254.169.254", "blocked_metadata", id="nat64-metadata"),
    pytest.param("64:ff9b::8.8.8.8", "blocked_nat64", id="nat64-public"),
    # 6to4 2002:AABB:CCDD::
    pytest.param("2002:7f00:1::1", "blocked_loopback", id="6to4-loopback"),
    pytest.param("2002:a9fe:a9fe::1", "blocked_metadata", id="6to4-metadata"),
    pytest.param("2002:c0a8:101::1", "blocked_private", id="6to4-private"),
    pytest.param("2002:808:808::1", "blocked_6to4", id="6to4-public"),
    # Teredo 2001:0:SERVER:flags:port:~CLIENT
    pytest.param(
        "2001:0:4136:e378:8000:63bf:3fff:fdd2", "blocked_documentation", id="teredo-rfc-example"
    ),
    pytest.param("2001:0:808:808::f5ff:fffe", "blocked_private", id="teredo-client-private"),
    pytest.param("2001:0:a00:1::f7f7:f7f7", "blocked_private", id="teredo-server-private"),
    pytest.param("2001:0:808:808::f7f7:f7f7", "blocked_teredo", id="teredo-public"),
]


@pytest.mark.parametrize(("address", "reason"), ADDRESSES)
def test_classify_address(address: str, reason: str) -> None:
    decision = classify_address(ipaddress.ip_address(address))
    assert decision.reason == reason
    assert decision.allowed is (reason == "public_address")
    if not decision.allowed:
        assert decision.detail


ALLOWED_NETWORKS = [
    pytest.param("10.1.2.3", ["10.0.0.0/8"], "allowed_network", "10.0.0.0/8", id="private-in-vpn"),
    pytest.param("10.1.2.3", ["10.9.0.0/16"], "blocked_private", "", id="private-outside-vpn"),
    pytest.param("127.0.0.1", ["127.0.0.1/32"], "allowed_network", "127.0.0.1/32", id="lo-32"),
    pytest.param("127.0.0.2", ["127.0.0.1/32"], "blocked_loopback", "", id="lo-32-neighbour"),
    pytest.param(
        "::ffff:127.0.0.1", ["127.0.0.1/32"], "allowed_network", "127.0.0.1/32", id="mapped-lo-32"
    ),
    pytest.param(
        "::127.0.0.1", ["127.0.0.1/32"], "allowed_network", "127.0.0.1/32", id="compat-lo-32"
    ),
    pytest.param(
        "64:ff9b::a00:1", ["10.0.0.0/8"], "allowed_network", "10.0.0.0/8", id="nat64-in-vpn"
    ),
    pytest.param("2002:7f00:1::1", ["127.0.0.1/32"], "blocked_loopback", "", id="6to4-via-relay"),
    pytest.param(
        "2001:0:808:808::f5ff:fffe", ["10.0.0.0/8"], "blocked_private", "", id="teredo-via-relay"
    ),
    pytest.param(
        "fd12:3456::1", ["fd12:3456::/48"], "allowed_network", "fd12:3456::/48", id="v6-ula-range"
    ),
    pytest.param("fd12:3457::1", ["fd12:3456::/48"], "blocked_unique_local", "", id="v6-ula-out"),
    pytest.param(
        "::ffff:8.8.8.8",
        ["::ffff:0:0/96"],
        "allowed_network",
        "::ffff:0:0/96",
        id="mapped-as-given",
    ),
    pytest.param(
        "10.1.2.3", ["fd00::/8", "10.0.0.0/8"], "allowed_network", "10.0.0.0/8", id="mixed-families"
    ),
    pytest.param("8.8.8.8", ["10.0.0.0/8"], "public_address", "", id="public-unaffected"),
    pytest.param("::ffff:8.8.8.8", ["10.0.0.0/8"], "blocked_ipv4_mapped", "", id="mapped-public"),
]


@pytest.mark.parametrize(("address", "networks", "reason", "detail"), ALLOWED_NETWORKS)
def test_allowed_networks_are_narrow_exceptions(
    address: str, networks: list[str], reason: str, detail: str
) -> None:
    decision = classify_address(ipaddress.ip_address(address), parse_networks(networks))
    assert decision.reason == reason
    assert decision.allowed is (reason in ("allowed_network", "public_address"))
    if decision.allowed:
        assert decision.detail == detail


def test_embedded_denial_names_both_addresses() -> None:
    mapped = ipaddress.ip_address("::ffff:10.0.0.1")
    detail = classify_address(mapped).detail
    assert str(mapped) in detail
    assert "10.0.0.1" in detail


def test_no_table_row_is_shadowed_by_an_earlier_one() -> None:
    for i, (network, _) in enumerate(BLOCKED_RANGES):
        for earlier, _ in BLOCKED_RANGES[:i]:
            if earlier.version == network.version:
                assert not network.subnet_of(earlier), f"{network} is hidden by {earlier}"  # type: ignore[arg-type]


@pytest.mark.parametrize("row", [pytest.param(row, id=str(row[0])) for row in BLOCKED_RANGES])
def test_every_table_row_is_refused_edge_to_edge(row: tuple[IPNetwork, str]) -> None:
    network, _ = row
    middle = network.network_address + network.num_addresses // 2
    for ip in (network.network_address, middle, network.broadcast_address):
        assert not classify_address(ip).allowed, ip


def test_everything_python_calls_non_global_is_refused() -> None:
    """Cross-check with the standard library: the edge of every IPv4 /16 and IPv6 /16, plus the
    smaller special ranges' edges."""
    samples = [
        "192.0.0.0", "192.0.0.7", "192.0.0.170", "192.0.2.255", "198.51.100.0", "203.0.113.255",
        "::", "::1", "100::", "2001::", "2001:1ff:ffff::", "2001:2::", "2001:db8::", "2001:10::",
    ]  # fmt: skip
    candidates = [ipaddress.ip_address(text) for text in samples]
    for high in range(1 << 16):
        candidates.append(ipaddress.IPv4Address(high << 16))
        candidates.append(ipaddress.IPv4Address(high << 16 | 0xFFFF))
        candidates.append(ipaddress.IPv6Address(high << 112))
    checked = 0
    for ip in candidates:
        if not ip.is_global:
            checked += 1
            assert not classify_address(ip).allowed, ip
    assert checked > 1000


PARSE_OK = [
    pytest.param(["10.0.0.0/8"], ["10.0.0.0/8"], id="v4-cidr"),
    pytest.param(["fd12:3456::/48"], ["fd12:3456::/48"], id="v6-cidr"),
    pytest.param(["127.0.0.1"], ["127.0.0.1/32"], id="bare-v4-address"),
    pytest.param(["::1"], ["::1/128"], id="bare-v6-address"),
    pytest.param(["10.0.0.0/8", "10.0.0.0/8"], ["10.0.0.0/8"], id="duplicates-dropped"),
    pytest.param([], [], id="empty"),
]


@pytest.mark.parametrize(("values", "expected"), PARSE_OK)
def test_parse_networks(values: list[str], expected: list[str]) -> None:
    assert parse_networks(values) == tuple(ipaddress.ip_network(e) for e in expected)


PARSE_BAD = [
    pytest.param("10.0.0.1/8", "host bits", id="host-bits-set"),
    pytest.param("example.com", "not a network", id="a-name"),
    pytest.param("10.0.0.0/33", "not a network", id="prefix-too-long"),
    pytest.param("010.0.0.0/8", "not a network", id="leading-zero"),
    pytest.param(" 10.0.0.0/8", "not a network", id="whitespace"),
    pytest.param("0.0.0.0/0", "every address", id="v4-everything"),
    pytest.param("::/0", "every address", id="v6-everything"),
    pytest.param("fe80::%eth0/64", "zone", id="zone-id"),
    pytest.param(8, "string", id="not-a-string"),
]


@pytest.mark.parametrize(("value", "why"), PARSE_BAD)
def test_parse_networks_names_the_bad_entry(value: object, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        parse_networks(["10.0.0.0/8", value])  # type: ignore[list-item]
    assert repr(value) in str(caught.value)
