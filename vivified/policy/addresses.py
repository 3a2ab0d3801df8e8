"""Address classification: which resolved addresses egress may connect to, and why not."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from vivified.policy.decision import Decision

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


# The IANA special-purpose registries, stricter: every range that is not plain public unicast.
# First match wins, so a specific entry comes before the range that contains it.
BLOCKED_RANGES: tuple[tuple[IPNetwork, str], ...] = (
    # Cloud metadata services, ahead of link-local, CGNAT, IETF and ULA.
    (_net("169.254.169.254/32"), "blocked_metadata"),  # AWS, GCP, Azure, OCI, DigitalOcean...
    (_net("169.254.170.2/32"), "blocked_metadata"),  # AWS ECS task metadata
    (_net("169.254.170.23/32"), "blocked_metadata"),  # AWS EKS Pod Identity
    (_net("100.100.100.200/32"), "blocked_metadata"),  # Alibaba Cloud
    (_net("192.0.0.192/32"), "blocked_metadata"),  # Oracle Cloud
    (_net("fd00:ec2::254/128"), "blocked_metadata"),  # AWS IMDS over IPv6
    (_net("fd00:ec2::23/128"), "blocked_metadata"),  # AWS EKS Pod Identity over IPv6
    # IPv4
    (_net("0.0.0.0/8"), "blocked_unspecified"),
    (_net("10.0.0.0/8"), "blocked_private"),
    (_net("100.64.0.0/10"), "blocked_cgnat"),
    (_net("127.0.0.0/8"), "blocked_loopback"),
    (_net("169.254.0.0/16"), "blocked_link_local"),
    (_net("172.16.0.0/12"), "blocked_private"),
    (_net("192.0.0.0/24"), "blocked_ietf"),
    (_net("192.0.2.0/24"), "blocked_documentation"),
    (_net("192.88.99.0/24"), "blocked_6to4"),  # 6to4 relay anycast (deprecated)
    (_net("192.168.0.0/16"), "blocked_private"),
    (_net("198.18.0.0/15"), "blocked_benchmark"),
    (_net("198.51.100.0/24"), "blocked_documentation"),
    (_net("203.0.113.0/24"), "blocked_documentation"),
    (_net("224.0.0.0/4"), "blocked_multicast"),
    (_net("255.255.255.255/32"), "blocked_broadcast"),
    (_net("240.0.0.0/4"), "blocked_reserved"),
    # IPv6
    (_net("::/128"), "blocked_unspecified"),
    (_net("::1/128"), "blocked_loopback"),
    (_net("::ffff:0:0/96"), "blocked_ipv4_mapped"),
    (_net("::/96"), "blocked_ipv4_compat"),
    (_net("64:ff9b::/96"), "blocked_nat64"),
    (_net("64:ff9b:1::/48"), "blocked_nat64"),  # local-use NAT64 (RFC 8215)
    (_net("100::/64"), "blocked_discard"),
    (_net("2001::/32"), "blocked_teredo"),
    (_net("2001:2::/48"), "blocked_benchmark"),
    (_net("2001:10::/28"), "blocked_orchid"),
    (_net("2001:20::/28"), "blocked_orchid"),
    (_net("2001::/23"), "blocked_ietf"),  # IETF protocol assignments (AMT, AS112, TURN...)
    (_net("2001:db8::/32"), "blocked_documentation"),
    (_net("3fff::/20"), "blocked_documentation"),
    (_net("2002::/16"), "blocked_6to4"),
    (_net("fc00::/7"), "blocked_unique_local"),
    (_net("fe80::/10"), "blocked_link_local"),
    (_net("fec0::/10"), "blocked_site_local"),
    (_net("ff00::/8"), "blocked_multicast"),
)

# Everything else in IPv6 outside global unicast is unassigned or special: refuse it.
GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")

# IPv6 forms that carry an IPv4 address. For the direct ones, connecting to the IPv6 address
# reaches the IPv4 one, so an allowed network covers it; 6to4 and Teredo reach a relay, so the
# embedded address only makes the denial reason more specific.
_DIRECT_EMBEDDINGS = frozenset({"blocked_ipv4_mapped", "blocked_ipv4_compat", "blocked_nat64"})
_RELAYED_EMBEDDINGS = frozenset({"blocked_6to4", "blocked_teredo"})


def classify_address(ip: IPAddress, allowed_networks: Sequence[IPNetwork] = ()) -> Decision:
    """May egress connect to `ip`? Allowed: `public_address`, or `allowed_network` with the
    admin's network as `detail`. Denied: a `blocked_*` reason from `BLOCKED_RANGES`; for IPv6
    forms that embed an IPv4 address, the embedded address's reason when that one is blocked."""
    for network in allowed_networks:
        if ip in network:
            return Decision.allow("allowed_network", detail=str(network))
    match = next(((net, why) for net, why in BLOCKED_RANGES if ip in net), None)
    if match is None:
        if isinstance(ip, ipaddress.IPv6Address) and ip not in GLOBAL_UNICAST_V6:
            return Decision.deny("blocked_reserved", f"{ip} is outside IPv6 global unicast")
        return Decision.allow("public_address")
    network, reason = match
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip, reason)
        direct = reason in _DIRECT_EMBEDDINGS
        for inner_ip in embedded:
            inner = classify_address(inner_ip, allowed_networks if direct else ())
            if inner.reason == "allowed_network":
                return Decision.allow("allowed_network", detail=inner.detail)
            if not inner.allowed:
                return Decision.deny(inner.reason, f"{ip} embeds {inner_ip}: {inner.detail}")
    return Decision.deny(reason, f"{ip} is in {network}")


def _embedded_ipv4(ip: ipaddress.IPv6Address, reason: str) -> tuple[ipaddress.IPv4Address, ...]:
    bits = int(ip)
    if reason in _DIRECT_EMBEDDINGS and (reason != "blocked_nat64" or ip in NAT64_WELL_KNOWN):
        return (ipaddress.IPv4Address(bits & 0xFFFF_FFFF),)
    if reason == "blocked_6to4":
        return (ipaddress.IPv4Address((bits >> 80) & 0xFFFF_FFFF),)
    if reason == "blocked_teredo":
        # Client (stored inverted in the low 32 bits) first: it is the real destination.
        client = ipaddress.IPv4Address(~bits & 0xFFFF_FFFF)
        server = ipaddress.IPv4Address((bits >> 64) & 0xFFFF_FFFF)
        return (client, server)
    return ()


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse admin `allowed_networks` (CIDR, or a bare address for a single host), in order,
    without duplicates. Raises `ValueError` naming the bad entry."""
    networks: list[IPNetwork] = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"allowed network {value!r} must be a string such as '10.8.0.0/16'")
        if "%" in value:
            raise ValueError(f"allowed network {value!r}: leave out the IPv6 zone id")
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(
                f"allowed network {value!r} is not a network such as 10.8.0.0/16 or "
                f"fd12:3456::/48 ({exc})"
            ) from exc
        if network.prefixlen == 0:
            raise ValueError(
                f"allowed network {value!r} covers every address and would switch off address "
                "safety; list the networks you need"
            )
        if network not in networks:
            networks.append(network)
    return tuple(networks)
