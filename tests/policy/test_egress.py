"""The pure egress decision: every rule with its reason code."""

from __future__ import annotations

import ipaddress

import pytest

from vivified.policy.egress import (
    EgressRequest,
    audit_decision,
    audit_reason,
    decide_addresses,
    decide_egress,
    is_gateway_target,
)
from vivified.policy.egress_settings import EgressSettings, parse_egress_document

SETTINGS = parse_egress_document({"blocked_domains": ["bad.example.com"]})


def req(**kw: object) -> EgressRequest:
    base: dict[str, object] = {
        "plugin_id": "alpha",
        "plugin_status": "active",
        "allowlist": ("api.example.com", "*.example.org"),
        "mode": "enforce",
        "host": "api.example.com",
        "port": 443,
        "settings": SETTINGS,
    }
    base.update(kw)
    return EgressRequest(**base)  # type: ignore[arg-type]


CASES = [
    pytest.param({}, True, "allowed", id="exact"),
    pytest.param({"host": "API.Example.COM."}, True, "allowed", id="case-and-dot"),
    pytest.param({"host": "a.example.org"}, True, "allowed", id="wildcard-sub"),
    pytest.param({"host": "example.org"}, False, "host_not_allowed", id="wildcard-apex"),
    pytest.param({"host": "evil-example.org"}, False, "host_not_allowed", id="lookalike"),
    pytest.param({"host": "api.example.com.evil.net"}, False, "host_not_allowed", id="suffix"),
    pytest.param({"port": 8443}, False, "port_not_allowed", id="port"),
    pytest.param({"plugin_status": "disabled"}, False, "plugin_not_active", id="disabled"),
    pytest.param({"plugin_status": None}, False, "plugin_not_active", id="unknown"),
    pytest.param(
        {"settings": EgressSettings(enabled=False)}, False, "egress_disabled", id="kill-switch"
    ),
    pytest.param({"host": "127.0.0.1"}, False, "ip_literal_not_allowed", id="ip"),
    pytest.param({"host": "[::1]"}, False, "ip_literal_not_allowed", id="ip6"),
    pytest.param(
        {"host": "bad.example.com", "allowlist": ("bad.example.com",)},
        False,
        "blocked_domain",
        id="blocklist-beats-allowlist",
    ),
    pytest.param(
        {"host": "other.example.net", "mode": "report"}, True, "report_would_deny", id="report"
    ),
    pytest.param(
        {"port": 25, "mode": "report"}, False, "port_not_allowed", id="report-does-not-soften-ports"
    ),
    pytest.param(
        {"host": "bad.example.com", "mode": "report"},
        False,
        "blocked_domain",
        id="report-does-not-soften-blocklist",
    ),
]


@pytest.mark.parametrize(("changes", "allowed", "reason"), CASES)
def test_decide_egress(changes: dict[str, object], allowed: bool, reason: str) -> None:
    d = decide_egress(req(**changes))
    assert (d.allowed, d.reason) == (allowed, reason)


def test_report_is_audited_with_would_be_reason() -> None:
    d = decide_egress(req(host="x.example.net", mode="report"))
    assert audit_decision(d) == "report"
    assert audit_reason(d) == "host_not_allowed"
    ok = decide_egress(req())
    assert (audit_decision(ok), audit_reason(ok)) == ("allow", "allowed")


IP = ipaddress.ip_address
LOCAL = parse_egress_document({"allowed_networks": ["127.0.0.1/32"]})


@pytest.mark.parametrize(
    ("addrs", "settings", "allowed", "reason"),
    [
        pytest.param([IP("93.184.216.34")], SETTINGS, True, "allowed", id="public"),
        pytest.param(
            [IP("93.184.216.34"), IP("10.0.0.1")],
            SETTINGS,
            False,
            "blocked_private",
            id="any-candidate-blocked",
        ),
        pytest.param([IP("127.0.0.1")], SETTINGS, False, "blocked_loopback", id="loopback"),
        pytest.param([IP("127.0.0.1")], LOCAL, True, "allowed", id="allowed-network"),
        pytest.param([], SETTINGS, False, "dns_failed", id="no-addresses"),
    ],
)
def test_decide_addresses(
    addrs: list, settings: EgressSettings, allowed: bool, reason: str
) -> None:
    d = decide_addresses(addrs, 443, settings)
    assert (d.allowed, d.reason) == (allowed, reason)


@pytest.mark.parametrize(
    "listener", [("127.0.0.1", 8000), ("0.0.0.0", 8000), ("::", 8000), ("localhost", 8000)]
)
def test_core_listeners_refused_even_in_allowed_networks(listener: tuple[str, int]) -> None:
    d = decide_addresses([IP("127.0.0.1")], 8000, LOCAL, [listener])
    assert (d.allowed, d.reason) == (False, "blocked_core_listener")
    assert decide_addresses([IP("127.0.0.1")], 8001, LOCAL, [listener]).allowed


# --- internal names an admin allowlisted (they hold while host_overrides maps them) ---------------

MAPPED_SETTINGS = parse_egress_document({"host_overrides": {"db.internal": "10.0.0.5"}})


@pytest.mark.parametrize(
    ("host", "settings", "allowed", "reason"),
    [
        pytest.param("db.internal", MAPPED_SETTINGS, True, "allowed", id="mapped"),
        pytest.param("DB.internal.", MAPPED_SETTINGS, True, "allowed", id="mapped-dressed-up"),
        pytest.param("db.internal", SETTINGS, False, "internal_name_unmapped", id="unmapped"),
    ],
)
def test_allowlisted_internal_name_needs_its_mapping(
    host: str, settings: EgressSettings, allowed: bool, reason: str
) -> None:
    d = decide_egress(req(host=host, allowlist=("db.internal",), settings=settings))
    assert (d.allowed, d.reason) == (allowed, reason)


# --- gateway calls that reached the proxy ---------------------------------------------------------

GATEWAY = [("127.0.0.1", 8000), ("core.example.com", 443)]


@pytest.mark.parametrize(
    ("host", "port", "endpoints", "is_gateway"),
    [
        pytest.param("127.0.0.1", 8000, GATEWAY, True, id="listen-address"),
        pytest.param("localhost", 8000, GATEWAY, True, id="localhost"),
        pytest.param("2130706433", 8000, GATEWAY, True, id="decimal-loopback"),
        pytest.param("127.0.0.2", 8000, GATEWAY, True, id="other-loopback"),
        pytest.param("[::1]", 8000, GATEWAY, True, id="v6-loopback"),
        pytest.param("[::ffff:127.0.0.1]", 8000, GATEWAY, True, id="v6-mapped-loopback"),
        pytest.param("Core.Example.com.", 443, GATEWAY, True, id="public-url"),
        pytest.param("127.0.0.1", 8001, GATEWAY, False, id="other-port"),
        pytest.param("core.example.com", 8000, GATEWAY, False, id="public-name-other-port"),
        pytest.param("api.example.com", 443, GATEWAY, False, id="other-name"),
        pytest.param("10.0.0.1", 8000, GATEWAY, False, id="lan-address"),
        pytest.param("10.0.0.1", 8000, [("0.0.0.0", 8000)], False, id="unspecified-not-lan"),
        pytest.param("127.0.0.1", 8000, [("0.0.0.0", 8000)], True, id="unspecified-loopback"),
        pytest.param("", 8000, GATEWAY, False, id="empty-host"),
    ],
)
def test_is_gateway_target(
    host: str, port: int, endpoints: list[tuple[str, int]], is_gateway: bool
) -> None:
    assert is_gateway_target(host, port, endpoints) is is_gateway
