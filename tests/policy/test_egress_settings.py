"""The egress document: validation reports every problem with its path; filters layer."""

from __future__ import annotations

from typing import Any

import pytest

from vivified.policy.egress_settings import (
    DEFAULT_EGRESS_DOCUMENT,
    parse_egress_document,
    validate_egress_document,
)


def test_default_document_is_valid() -> None:
    assert validate_egress_document(DEFAULT_EGRESS_DOCUMENT) == []


BAD = [
    pytest.param({"enabld": True}, "/enabld", "unknown_key", id="unknown-key"),
    pytest.param({"enabled": "yes"}, "/enabled", "type", id="enabled-type"),
    pytest.param({"allowed_networks": ["10.0.0.0/33"]}, "/allowed_networks/0", "cidr", id="cidr"),
    pytest.param({"allowed_ports": [0]}, "/allowed_ports/0", "port", id="port-zero"),
    pytest.param({"allowed_ports": [True]}, "/allowed_ports/0", "port", id="port-bool"),
    pytest.param({"allowed_ports": "443"}, "/allowed_ports", "type", id="ports-type"),
    pytest.param(
        {"host_overrides": {"api.example.com": "010.1"}},
        "/host_overrides/api.example.com",
        "address",
        id="override-nonstandard-ip",
    ),
    pytest.param(
        {"host_overrides": {"127.0.0.1": "10.0.0.1"}},
        "/host_overrides/127.0.0.1",
        "ip_literal",
        id="override-key-ip",
    ),
    pytest.param({"host_overrides": []}, "/host_overrides", "type", id="overrides-type"),
    pytest.param(
        {"response_filters": {"default": {"max_body_bytes": -1}}},
        "/response_filters/default/max_body_bytes",
        "range",
        id="negative-size",
    ),
    pytest.param(
        {"response_filters": {"default": {"max_body_bytes": True}}},
        "/response_filters/default/max_body_bytes",
        "range",
        id="bool-size",
    ),
    pytest.param(
        {"response_filters": {"global": {}}},
        "/response_filters/global",
        "unknown_key",
        id="filter-scope",
    ),
    pytest.param(
        {"response_filters": {"plugins": {"a": {"strip": []}}}},
        "/response_filters/plugins/a/strip",
        "unknown_key",
        id="filter-key",
    ),
    pytest.param(
        {"response_filters": {"default": {"allowed_content_types": ["json"]}}},
        "/response_filters/default/allowed_content_types/0",
        "content_type",
        id="content-type",
    ),
    pytest.param(
        {"response_filters": {"default": {"strip_headers": ["bad header"]}}},
        "/response_filters/default/strip_headers/0",
        "header_name",
        id="header-name",
    ),
]


@pytest.mark.parametrize(("doc", "path", "code"), BAD)
def test_problems_have_path_and_code(doc: dict[str, Any], path: str, code: str) -> None:
    problems = validate_egress_document(doc)
    assert {"path": path, "code": code} in [
        {"path": p["path"], "code": p["code"]} for p in problems
    ], problems
    assert all(p["message"] for p in problems)


def test_every_problem_at_once() -> None:
    problems = validate_egress_document(
        {"enabled": 1, "allowed_ports": [0, 70000], "allowed_networks": ["x"]}
    )
    assert len(problems) == 4


def test_not_an_object() -> None:
    assert validate_egress_document([])[0]["code"] == "type"


def test_override_to_blocked_address_is_stored() -> None:
    # Stored; the connection is still refused unless inside allowed_networks (address rules).
    assert validate_egress_document({"host_overrides": {"api.example.com": "10.0.0.1"}}) == []


def test_filters_layer_default_plugin_domain() -> None:
    s = parse_egress_document(
        {
            "response_filters": {
                "default": {"max_body_bytes": 100, "strip_headers": ["Server"]},
                "plugins": {"alpha": {"max_body_bytes": 50, "allowed_content_types": ["text/*"]}},
                "domains": {"*.example.org": {"max_body_bytes": 10}},
            }
        }
    )
    rule = s.filters.effective("alpha", "a.example.org", phi=False)
    assert rule.max_body_bytes == 10
    assert rule.allows_content_type("text/csv; charset=utf-8")
    assert not rule.allows_content_type("application/json")
    assert rule.strips("server")
    assert rule.strips("X-Vivified-Caller")
    assert not rule.strips("set-cookie")
    other = s.filters.effective("beta", "example.org", phi=True)
    assert other.max_body_bytes == 100
    assert other.allowed_content_types is None
    assert other.strips("Set-Cookie")


def test_passthrough_matching() -> None:
    s = parse_egress_document({"passthrough_domains": ["*.example.org", "api.example.com"]})
    assert s.is_passthrough("a.example.org")
    assert s.is_passthrough("api.example.com")
    assert not s.is_passthrough("example.org")
    assert not s.is_passthrough("evil-example.org")
