"""The egress settings document: defaults, validation, parsing and response-filter rules (pure)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_EGRESS_DOCUMENT: dict[str, Any] = {
    "enabled": True,
    "blocked_domains": [],
    "allowed_networks": [],
    "host_overrides": {},
    "allowed_ports": [80, 443],
    "passthrough_domains": [],
    "response_filters": {},
}

# Headers core sets itself; an upstream must never be able to forge them.
CORE_HEADER_PREFIX = "x-vivified-"
PHI_STRIPPED_HEADERS = ("set-cookie",)
FILTER_KEYS = frozenset({"max_body_bytes", "allowed_content_types", "strip_headers"})
FILTER_SCOPES = frozenset({"default", "plugins", "domains"})
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTENT_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/([a-z0-9!#$&^_.+-]+|\*)$")


@dataclass(frozen=True)
class FilterRule:
    """Response filtering for one scope; `None` means "not set here, inherit"."""

    max_body_bytes: int | None = None
    allowed_content_types: tuple[str, ...] | None = None
    strip_headers: tuple[str, ...] = ()

    def over(self, base: FilterRule) -> FilterRule:
        """This rule layered over `base`: set fields win, stripped headers add up."""
        return FilterRule(
            max_body_bytes=base.max_body_bytes
            if self.max_body_bytes is None
            else self.max_body_bytes,
            allowed_content_types=base.allowed_content_types
            if self.allowed_content_types is None
            else self.allowed_content_types,
            strip_headers=tuple(dict.fromkeys(base.strip_headers + self.strip_headers)),
        )

    def allows_content_type(self, value: str | None) -> bool:
        """Whether a response `Content-Type` passes (`type/*` wildcards; no header passes)."""
        if self.allowed_content_types is None or not value:
            return True
        media = value.split(";", 1)[0].strip().lower()
        major = media.split("/", 1)[0]
        return any(
            allowed in (media, f"{major}/*", "*/*") for allowed in self.allowed_content_types
        )

    def strips(self, header: str) -> bool:
        """Whether an upstream response header is removed before the plugin sees it."""
        name = header.lower()
        return name.startswith(CORE_HEADER_PREFIX) or name in self.strip_headers


@dataclass(frozen=True)
class ResponseFilters:
    """Global defaults, then per plugin, then per domain (most specific wins)."""

    default: FilterRule = field(default_factory=FilterRule)
    plugins: Mapping[str, FilterRule] = field(default_factory=dict)
    domains: Mapping[str, FilterRule] = field(default_factory=dict)

    def effective(self, plugin_id: str, host: str, *, phi: bool) -> FilterRule:
        """The rule for `plugin_id` fetching from `host` (a normalised name)."""
        rule = FilterRule(strip_headers=PHI_STRIPPED_HEADERS if phi else ())
        rule = self.default.over(rule)
        if plugin_id in self.plugins:
            rule = self.plugins[plugin_id].over(rule)
        domain = _match_domain(host, self.domains)
        if domain is not None:
            rule = self.domains[domain].over(rule)
        return rule


@dataclass(frozen=True)
class EgressSettings:
    """The parsed egress document."""

    enabled: bool = True
    blocked_domains: tuple[str, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()
    host_overrides: Mapping[str, str] = field(default_factory=dict)
    allowed_ports: frozenset[int] = frozenset({80, 443})
    passthrough_domains: tuple[str, ...] = ()
    response_filters: Mapping[str, Any] = field(default_factory=dict)
    filters: ResponseFilters = field(default_factory=ResponseFilters)

    def is_passthrough(self, host: str) -> bool:
        """Whether `host` (normalised) is tunnelled without interception."""
        return _match_domain(host, dict.fromkeys(self.passthrough_domains)) is not None


def _match_domain(host: str, entries: Mapping[str, object]) -> str | None:
    """Exact name, or `*.x.y` for strict subdomains of x.y (never the apex)."""
    host = host.lower().rstrip(".")
    if host in entries:
        return host
    labels = host.split(".")
    for i in range(1, len(labels)):
        candidate = "*." + ".".join(labels[i:])
        if candidate in entries:
            return candidate
    return None


def _rule(raw: Mapping[str, Any]) -> FilterRule:
    types = raw.get("allowed_content_types")
    return FilterRule(
        max_body_bytes=None if raw.get("max_body_bytes") is None else int(raw["max_body_bytes"]),
        allowed_content_types=None if types is None else tuple(t.lower() for t in types),
        strip_headers=tuple(h.lower() for h in raw.get("strip_headers") or ()),
    )


def parse_response_filters(raw: Mapping[str, Any]) -> ResponseFilters:
    """Build the filter rules from the document's `response_filters` object."""
    return ResponseFilters(
        default=_rule(raw.get("default") or {}),
        plugins={k: _rule(v) for k, v in (raw.get("plugins") or {}).items()},
        domains={k.lower(): _rule(v) for k, v in (raw.get("domains") or {}).items()},
    )


def parse_egress_document(doc: Mapping[str, Any]) -> EgressSettings:
    """Turn a stored egress document into settings (the document was validated on write)."""
    merged = {**DEFAULT_EGRESS_DOCUMENT, **doc}
    filters = dict(merged["response_filters"] or {})
    return EgressSettings(
        enabled=bool(merged["enabled"]),
        blocked_domains=tuple(d.lower() for d in merged["blocked_domains"]),
        allowed_networks=tuple(
            ipaddress.ip_network(n, strict=False) for n in merged["allowed_networks"]
        ),
        host_overrides={
            k.lower().rstrip("."): str(ipaddress.ip_address(v))
            for k, v in dict(merged["host_overrides"]).items()
        },
        allowed_ports=frozenset(int(p) for p in merged["allowed_ports"]),
        passthrough_domains=tuple(d.lower() for d in merged["passthrough_domains"]),
        response_filters=filters,
        filters=parse_response_filters(filters),
    )


# --- validation -------------------------------------------------------------------------------


def _problem(path: str, code: str, message: str) -> dict[str, str]:
    return {"path": path, "code": code, "message": message}


def _domain_problems(path: str, value: Any, blocklist: Iterable[str]) -> list[dict[str, str]]:
    from vivified.policy.domains import check_domain_entry

    if not isinstance(value, str):
        return [_problem(path, "type", "must be a string")]
    entry = check_domain_entry(value, tuple(blocklist))
    if entry.ok:
        return []
    out = []
    for p in entry.problems or ("invalid domain",):
        code = p.get("code") if isinstance(p, Mapping) else getattr(p, "code", "invalid_domain")
        msg = p.get("message") if isinstance(p, Mapping) else getattr(p, "message", str(p))
        out.append(_problem(path, str(code or "invalid_domain"), str(msg)))
    return out


def _string_list(doc: Mapping[str, Any], key: str) -> tuple[list[Any], list[dict[str, str]]]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        return [], [_problem(f"/{key}", "type", "must be a list")]
    return value, []


def _filter_problems(path: str, raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, Mapping):
        return [_problem(path, "type", "must be an object")]
    problems = [
        _problem(
            f"{path}/{k}",
            "unknown_key",
            f"unknown filter key {k!r}; use one of " + ", ".join(sorted(FILTER_KEYS)),
        )
        for k in raw
        if k not in FILTER_KEYS
    ]
    size = raw.get("max_body_bytes")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        problems.append(
            _problem(
                f"{path}/max_body_bytes", "range", "must be a non-negative integer (bytes) or null"
            )
        )
    types = raw.get("allowed_content_types")
    if types is not None:
        if not isinstance(types, list):
            problems.append(_problem(f"{path}/allowed_content_types", "type", "must be a list"))
        else:
            for i, t in enumerate(types):
                if not isinstance(t, str) or not _CONTENT_TYPE.match(t.lower()):
                    problems.append(
                        _problem(
                            f"{path}/allowed_content_types/{i}",
                            "content_type",
                            "must be a media type like application/json or text/*",
                        )
                    )
    strip = raw.get("strip_headers", [])
    if not isinstance(strip, list):
        problems.append(_problem(f"{path}/strip_headers", "type", "must be a list"))
    else:
        for i, h in enumerate(strip):
            if not isinstance(h, str) or not _HEADER_NAME.match(h):
                problems.append(
                    _problem(
                        f"{path}/strip_headers/{i}", "header_name", "must be an HTTP header name"
                    )
                )
    return problems


def _response_filter_problems(raw: Any, blocklist: Iterable[str]) -> list[dict[str, str]]:
    base = "/response_filters"
    if not isinstance(raw, Mapping):
        return [_problem(base, "type", "must be an object")]
    problems = [
        _problem(
            f"{base}/{k}", "unknown_key", f"unknown key {k!r}; use one of default, plugins, domains"
        )
        for k in raw
        if k not in FILTER_SCOPES
    ]
    if "default" in raw:
        problems += _filter_problems(f"{base}/default", raw["default"])
    for scope in ("plugins", "domains"):
        entries = raw.get(scope, {})
        if not isinstance(entries, Mapping):
            problems.append(_problem(f"{base}/{scope}", "type", "must be an object"))
            continue
        for key, rule in entries.items():
            path = f"{base}/{scope}/{_escape(str(key))}"
            if scope == "domains":
                problems += _domain_problems(path, key, blocklist)
            problems += _filter_problems(path, rule)
    return problems


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def validate_egress_document(doc: Any) -> list[dict[str, str]]:
    """Every problem of an egress document at once, each `{path, code, message}`."""
    if not isinstance(doc, Mapping):
        return [_problem("", "type", "the egress document must be a JSON object")]
    problems = [
        _problem(
            f"/{_escape(str(k))}",
            "unknown_key",
            f"unknown key {k!r}; use one of " + ", ".join(sorted(DEFAULT_EGRESS_DOCUMENT)),
        )
        for k in doc
        if k not in DEFAULT_EGRESS_DOCUMENT
    ]
    if not isinstance(doc.get("enabled", True), bool):
        problems.append(_problem("/enabled", "type", "must be true or false"))

    blocked, more = _string_list(doc, "blocked_domains")
    problems += more
    for i, d in enumerate(blocked):
        problems += _domain_problems(f"/blocked_domains/{i}", d, ())
    blocklist = [d for d in blocked if isinstance(d, str)]

    passthrough, more = _string_list(doc, "passthrough_domains")
    problems += more
    for i, d in enumerate(passthrough):
        problems += _domain_problems(f"/passthrough_domains/{i}", d, blocklist)

    networks, more = _string_list(doc, "allowed_networks")
    problems += more
    for i, n in enumerate(networks):
        try:
            ipaddress.ip_network(n, strict=False)
        except (TypeError, ValueError):
            problems.append(
                _problem(
                    f"/allowed_networks/{i}",
                    "cidr",
                    "must be a CIDR such as 10.8.0.0/16 or fd00::/64",
                )
            )

    ports, more = _string_list(doc, "allowed_ports")
    problems += more
    for i, p in enumerate(ports):
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535:
            problems.append(
                _problem(f"/allowed_ports/{i}", "port", "must be an integer between 1 and 65535")
            )

    overrides = doc.get("host_overrides", {})
    if not isinstance(overrides, Mapping):
        problems.append(_problem("/host_overrides", "type", "must be an object {name: address}"))
    else:
        for name, addr in overrides.items():
            path = f"/host_overrides/{_escape(str(name))}"
            problems += _override_name_problems(path, name)
            try:
                ipaddress.ip_address(addr)
            except (TypeError, ValueError):
                problems.append(
                    _problem(
                        path, "address", "must be an IPv4 or IPv6 address in standard notation"
                    )
                )

    problems += _response_filter_problems(doc.get("response_filters", {}), blocklist)
    return problems


def _override_name_problems(path: str, name: Any) -> list[dict[str, str]]:
    from vivified.policy.hosts import HostError, parse_host

    if not isinstance(name, str):
        return [_problem(path, "type", "names must be strings")]
    try:
        host = parse_host(name)
    except HostError as exc:
        return [_problem(path, exc.code, str(exc))]
    if host.kind != "name":
        return [_problem(path, "ip_literal", "an override maps a name, not an address")]
    return []
