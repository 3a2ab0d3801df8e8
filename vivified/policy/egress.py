"""Egress decisions (pure): may this plugin reach this host, port and address, and why."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vivified.policy.addresses import classify_address
from vivified.policy.decision import Decision
from vivified.policy.domains import is_blocked_name, is_internal_name, match_allowlist
from vivified.policy.egress_settings import EgressSettings, IPAddress
from vivified.policy.hosts import Host, HostError, parse_host

ALLOWED = "allowed"
REPORT = "report_would_deny"
# Only the allowlist itself is softened by report mode; kill switch, plugin state, blocklist,
# ports and address safety are always enforced.
REPORTABLE = frozenset({"host_not_allowed"})


@dataclass(frozen=True)
class EgressRequest:
    """Everything one egress decision needs, in one struct so new fields don't break callers."""

    plugin_id: str
    plugin_status: str | None  # None: unknown plugin
    allowlist: tuple[str, ...]
    mode: str  # enforce | report
    host: str  # as the client sent it (CONNECT target, URL or Host header)
    port: int
    settings: EgressSettings = field(default_factory=EgressSettings)


def normalise_host(raw: str) -> Host:
    """Parse a target host; raises `HostError` with a stable code."""
    return parse_host(raw)


def decide_egress(req: EgressRequest) -> Decision:
    """The name-level decision. In report mode an allowlist miss is allowed with
    reason `report_would_deny` and the would-be denial code as `detail`."""
    s = req.settings
    if not s.enabled:
        return Decision.deny("egress_disabled", "the egress lane is switched off")
    if req.plugin_status is None:
        return Decision.deny("plugin_not_active", f"unknown plugin {req.plugin_id!r}")
    if req.plugin_status != "active":
        return Decision.deny("plugin_not_active", f"plugin is {req.plugin_status}")
    try:
        host = parse_host(req.host)
    except HostError as exc:
        return Decision.deny(exc.code, str(exc))
    if host.kind == "ip":
        return Decision.deny(
            "ip_literal_not_allowed", "address literals are never on an allowlist; use a name"
        )
    if req.port not in s.allowed_ports:
        return Decision.deny("port_not_allowed", f"port {req.port} is not allowed")
    blocked = is_blocked_name(host, s.blocked_domains)
    if blocked is not None:
        return Decision.deny("blocked_domain", f"{host.value} matches blocked {blocked}")
    matched = match_allowlist(host, req.allowlist)
    if matched is not None:
        if is_internal_name(matched) and host.value not in s.host_overrides:
            # An admin's exception holds only while the admin's mapping does: never DNS.
            return Decision.deny(
                "internal_name_unmapped",
                f"{host.value} is an internal name and host_overrides no longer maps it",
            )
        return Decision.allow(ALLOWED, matched)
    if req.mode == "report":
        return Decision.allow(REPORT, "host_not_allowed")
    return Decision.deny("host_not_allowed", f"{host.value} is not on the plugin's allowlist")


GATEWAY_VIA_PROXY = "gateway_via_proxy"


def is_gateway_target(host: str, port: int, gateway: Iterable[tuple[str, int]]) -> bool:
    """Whether `host:port` is core's own gateway, one of its `(host, port)` endpoints.

    Names compare after normalisation; a loopback or unspecified endpoint is reached by every
    loopback address and `localhost` name on its port."""
    try:
        asked = parse_host(host)
    except HostError:
        return False
    for ghost, gport in gateway:
        if gport != port:
            continue
        try:
            endpoint = parse_host(ghost)
        except HostError:
            continue
        if asked.value == endpoint.value or (_is_local(endpoint) and _is_local(asked)):
            return True
    return False


def _is_local(host: Host) -> bool:
    if host.kind == "name":
        return host.value == "localhost" or host.value.endswith(".localhost")
    ip = host.ip if host.ip is not None else ipaddress.ip_address(host.value)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def audit_reason(decision: Decision) -> str:
    """The reason an audit record carries: for report mode, the would-be denial."""
    if decision.allowed and decision.reason == REPORT:
        return decision.detail or "host_not_allowed"
    return decision.reason


def audit_decision(decision: Decision) -> str:
    """`allow`, `deny` or `report` for the audit trail."""
    if not decision.allowed:
        return "deny"
    return "report" if decision.reason == REPORT else "allow"


def _is_own_listener(ip: IPAddress, port: int, listeners: Iterable[tuple[str, int]]) -> bool:
    for host, lport in listeners:
        if lport != port:
            continue
        try:
            lip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if host in ("localhost", "") and ip.is_loopback:
                return True
            continue
        if lip == ip or lip.is_unspecified or (ip.is_loopback and lip.is_loopback):
            return True
    return False


def decide_addresses(
    addresses: Sequence[IPAddress],
    port: int,
    settings: EgressSettings,
    own_listeners: Iterable[tuple[str, int]] = (),
) -> Decision:
    """Refuse unless every candidate address is safe; core's own listeners are always refused.

    Allowed: `detail` is the address to connect to (the first candidate)."""
    if not addresses:
        return Decision.deny("dns_failed", "the name has no addresses")
    listeners = tuple(own_listeners)
    for ip in addresses:
        if _is_own_listener(ip, port, listeners):
            return Decision.deny("blocked_core_listener", f"{ip}:{port} is core itself")
        verdict = classify_address(ip, settings.allowed_networks)
        if not verdict.allowed:
            return Decision.deny(verdict.reason, f"{ip}: {verdict.detail or verdict.reason}")
    return Decision.allow(ALLOWED, str(addresses[0]))
