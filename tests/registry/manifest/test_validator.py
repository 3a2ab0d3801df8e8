"""validate_manifest: every rule with a passing and a failing case, exact codes and paths."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from support.manifests import SEED_USER_MANAGEMENT, seed, simple

from vivified.registry.manifest.validator import (
    RESERVED_IDS,
    contract_alias,
    find_dependency_cycles,
    validate_manifest,
)

AUTH: dict[str, Any] = {"authentication_required": True}


def phi(**changes: Any) -> dict[str, Any]:
    base = seed(
        id="patient-records",
        traits=["handles_phi", "audit_required"],
        security={**AUTH, "data_classification": ["phi", "internal"]},
        compliance={
            "hipaa_controls": ["164.312(a)", "164.308(a)(1)(ii)(D)"],
            "audit_level": "detailed",
            "data_retention_days": 2190,
        },
    )
    base.update(changes)
    return base


def without(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(manifest)
    del out[key]
    return out


def errors(manifest: object, **kwargs: Any) -> set[tuple[str, str]]:
    return {(p.path, p.code) for p in validate_manifest(manifest, **kwargs).errors}


def test_seed_example_passes() -> None:
    result = validate_manifest(SEED_USER_MANAGEMENT)
    assert result.ok
    assert result.errors == ()
    assert result.warnings == ()
    assert result.manifest is not None
    assert result.manifest["id"] == "user-management"


VALID = [
    pytest.param(simple("reports"), id="simple"),
    pytest.param(seed(id="a" * 63), id="id-63-chars"),
    pytest.param(seed(id="abc"), id="id-3-chars"),
    pytest.param(seed(id="a1-b2-c3"), id="id-hyphens"),
    pytest.param(seed(version="1.0.0-rc.1+build.5"), id="semver-prerelease-build"),
    pytest.param(seed(version="0.0.0"), id="semver-zero"),
    pytest.param(seed(name="X"), id="name-short"),
    pytest.param(seed(contracts=["IdentityPlugin", "UserDirectoryPlugin"]), id="contracts-two"),
    pytest.param(seed(dependencies=["other-plugin"]), id="dependency"),
    pytest.param(phi(), id="phi-plugin"),
    pytest.param(phi(security={**AUTH, "data_classification": ["phi", "pii"]}), id="phi-pii"),
    pytest.param(
        simple(
            "mailer",
            traits=["external_service"],
            allowed_domains=["api.sendgrid.com", "*.example.org"],
        ),
        id="external-with-domains",
    ),
    pytest.param(seed(endpoints={}), id="no-endpoints"),
    pytest.param(seed(endpoints={"a_b": "/api/a/{id}/b"}), id="endpoint-param"),
    pytest.param(
        seed(health_check={"type": "http", "port": 9000, "path": "/healthz"}), id="health-check"
    ),
    pytest.param(seed(health_check={"type": "http", "port": 65535}), id="health-check-no-path"),
    pytest.param(seed(health_check={"type": "tcp", "port": 5432}), id="health-check-tcp"),
    pytest.param(seed(resources={"memory_limit": 64, "cpu_limit": 0.1}), id="resources-min"),
    pytest.param(seed(resources={"memory_limit": 8192, "cpu_limit": 8}), id="resources-max"),
    pytest.param(seed(base_url="https://users.example.com:8443/base"), id="base-url"),
    pytest.param(seed(events={"publishes": ["UserCreated", "UserDeleted"]}), id="publishes"),
    pytest.param(
        seed(
            events={"subscribes": ["UserUpdated"]},
            endpoints={"events": "/events", "health": "/health"},
        ),
        id="subscribes-pii-with-trait",
    ),
    pytest.param(
        simple("audit-sink", events={"subscribes": ["AuditAlert"]}, endpoints={"events": "/e"}),
        id="subscribes-internal",
    ),
    pytest.param(seed(**{"x-team": {"owner": ["a", 1, None, 2.5]}}), id="x-extension"),
    pytest.param(
        seed(security={**AUTH, "data_classification": ["pii"], "x-note": "ok"}),
        id="nested-x-extension",
    ),
    pytest.param(seed(compliance={"audit_level": "complete"}), id="compliance-no-hipaa"),
    pytest.param(simple("plain", compliance={"audit_level": "basic"}), id="audit-required-basic"),
    pytest.param(
        simple(
            "pub",
            traits=["stateless"],
            compliance={},
            security={**AUTH, "data_classification": ["public"]},
        ),
        id="no-audit-needed",
    ),
]


@pytest.mark.parametrize("manifest", VALID)
def test_valid_manifests_pass(manifest: dict[str, Any]) -> None:
    result = validate_manifest(manifest)
    assert result.errors == ()
    assert result.manifest is not None


LONG = "x" * 201
INVALID = [
    pytest.param(without(SEED_USER_MANAGEMENT, "id"), "/id", "missing_field", id="id-missing"),
    pytest.param(without(seed(), "security"), "/security", "missing_field", id="sec-missing"),
    pytest.param(without(seed(), "traits"), "/traits", "missing_field", id="traits-missing"),
    pytest.param(seed(trait=["a"]), "/trait", "unknown_field", id="unknown-top-level"),
    pytest.param(seed(**{"a/b~c": 1}), "/a~1b~0c", "unknown_field", id="pointer-escaping"),
    pytest.param(seed(id=5), "/id", "invalid_type", id="id-not-string"),
    pytest.param(seed(id="User"), "/id", "invalid_id", id="id-uppercase"),
    pytest.param(seed(id="ab"), "/id", "invalid_id", id="id-too-short"),
    pytest.param(seed(id="a" * 64), "/id", "invalid_id", id="id-too-long"),
    pytest.param(seed(id="-abc"), "/id", "invalid_id", id="id-leading-hyphen"),
    pytest.param(seed(id="ab--c"), "/id", "invalid_id", id="id-double-hyphen"),
    pytest.param(seed(id="plugins"), "/id", "reserved_id", id="id-reserved"),
    pytest.param(seed(version="1.0"), "/version", "invalid_version", id="version-short"),
    pytest.param(seed(version="01.0.0"), "/version", "invalid_version", id="version-leading-0"),
    pytest.param(seed(version="1.0.0\n"), "/version", "invalid_version", id="version-newline"),
    pytest.param(seed(version=1), "/version", "invalid_type", id="version-number"),
    pytest.param(seed(name="  "), "/name", "invalid_name", id="name-blank"),
    pytest.param(seed(name=LONG), "/name", "invalid_name", id="name-too-long"),
    pytest.param(seed(description=5), "/description", "invalid_type", id="description-type"),
    pytest.param(seed(contracts=[]), "/contracts", "empty_list", id="contracts-empty"),
    pytest.param(
        seed(contracts="IdentityPlugin"), "/contracts", "invalid_type", id="contracts-str"
    ),
    pytest.param(
        seed(contracts=["identity"]), "/contracts/0", "invalid_contract", id="contract-bad"
    ),
    pytest.param(
        seed(contracts=["Plugin"]), "/contracts/0", "invalid_contract", id="contract-bare"
    ),
    pytest.param(
        seed(contracts=["IdentityPlugin", "IdentityPlugin"]),
        "/contracts/1",
        "duplicate_contract",
        id="contract-duplicate",
    ),
    pytest.param(seed(traits=[]), "/traits", "empty_list", id="traits-empty"),
    pytest.param(seed(traits=["handles_pii", "Bad"]), "/traits/1", "invalid_trait", id="trait-bad"),
    pytest.param(seed(traits=["handles_pii", 3]), "/traits/1", "invalid_type", id="trait-number"),
    pytest.param(
        seed(traits=["handles_pii", "admin"]), "/traits/1", "forbidden_trait", id="trait-admin"
    ),
    pytest.param(seed(traits=["handles_pii", "root"]), "/traits/1", "forbidden_trait", id="root"),
    pytest.param(
        seed(traits=["handles_pii", "handles_pii"]), "/traits/1", "duplicate_trait", id="trait-dup"
    ),
    pytest.param(
        seed(dependencies=["Bad_Id"]), "/dependencies/0", "invalid_dependency", id="dep-bad"
    ),
    pytest.param(
        seed(dependencies=["user-management"]), "/dependencies/0", "self_dependency", id="dep-self"
    ),
    pytest.param(
        seed(dependencies=["abc", "abc"]), "/dependencies/1", "duplicate_dependency", id="dep-dup"
    ),
    pytest.param(seed(dependencies={}), "/dependencies", "invalid_type", id="deps-object"),
    pytest.param(
        seed(allowed_domains=["localhost"]), "/allowed_domains/0", "internal_name", id="localhost"
    ),
    pytest.param(
        seed(allowed_domains=["10.0.0.1"]), "/allowed_domains/0", "ip_literal", id="ip-literal"
    ),
    pytest.param(
        seed(allowed_domains=["co.uk"]), "/allowed_domains/0", "public_suffix", id="public-suffix"
    ),
    pytest.param(
        seed(allowed_domains=["a.*.com"]), "/allowed_domains/0", "bad_wildcard", id="bad-wildcard"
    ),
    pytest.param(
        seed(allowed_domains=["api.example.com", "API.Example.COM"]),
        "/allowed_domains/1",
        "duplicate_domain",
        id="domain-duplicate-after-normalising",
    ),
    pytest.param(seed(allowed_domains=[1]), "/allowed_domains/0", "not_a_string", id="domain-int"),
    pytest.param(
        seed(endpoints={"Bad": "/x"}), "/endpoints/Bad", "invalid_endpoint_name", id="ep-name"
    ),
    pytest.param(
        seed(endpoints={"a/b": "/x"}), "/endpoints/a~1b", "invalid_endpoint_name", id="ep-slash"
    ),
    pytest.param(seed(endpoints={"a": "x"}), "/endpoints/a", "invalid_endpoint_path", id="ep-rel"),
    pytest.param(
        seed(endpoints={"a": "/a/../b"}), "/endpoints/a", "invalid_endpoint_path", id="ep-dotdot"
    ),
    pytest.param(
        seed(endpoints={"a": "/a b"}), "/endpoints/a", "invalid_endpoint_path", id="ep-ws"
    ),
    pytest.param(
        seed(endpoints={"a": "/x://y"}), "/endpoints/a", "invalid_endpoint_path", id="ep-scheme"
    ),
    pytest.param(seed(endpoints={"a": 1}), "/endpoints/a", "invalid_endpoint_path", id="ep-int"),
    pytest.param(seed(endpoints=[]), "/endpoints", "invalid_type", id="endpoints-list"),
    pytest.param(
        seed(security={"authentication_required": False, "data_classification": ["pii"]}),
        "/security/authentication_required",
        "authentication_not_required",
        id="auth-false",
    ),
    pytest.param(
        seed(security={"authentication_required": 1, "data_classification": ["pii"]}),
        "/security/authentication_required",
        "authentication_not_required",
        id="auth-one-is-not-true",
    ),
    pytest.param(
        seed(security={"data_classification": ["pii"]}),
        "/security/authentication_required",
        "missing_field",
        id="auth-missing",
    ),
    pytest.param(
        seed(security=AUTH), "/security/data_classification", "missing_field", id="class-missing"
    ),
    pytest.param(
        seed(security={**AUTH, "data_classification": []}),
        "/security/data_classification",
        "empty_list",
        id="class-empty",
    ),
    pytest.param(
        seed(security={**AUTH, "data_classification": ["pii", "secret"]}),
        "/security/data_classification/1",
        "invalid_classification",
        id="class-unknown",
    ),
    pytest.param(
        seed(security={**AUTH, "data_classification": ["pii", "pii"]}),
        "/security/data_classification/1",
        "duplicate_classification",
        id="class-duplicate",
    ),
    pytest.param(
        seed(security={**AUTH, "data_classification": ["pii"], "extra": 1}),
        "/security/extra",
        "unknown_field",
        id="security-unknown-key",
    ),
    pytest.param(
        seed(compliance={"hipaa_controls": ["164.31(a)"], "audit_level": "basic"}),
        "/compliance/hipaa_controls/0",
        "invalid_hipaa_control",
        id="hipaa-bad",
    ),
    pytest.param(
        seed(compliance={"hipaa_controls": ["164.312(A)"], "audit_level": "basic"}),
        "/compliance/hipaa_controls/0",
        "invalid_hipaa_control",
        id="hipaa-upper-first",
    ),
    pytest.param(
        seed(compliance={"hipaa_controls": ["164.312(a)", "164.312(a)"], "audit_level": "basic"}),
        "/compliance/hipaa_controls/1",
        "duplicate_hipaa_control",
        id="hipaa-duplicate",
    ),
    pytest.param(
        seed(compliance={"audit_level": "full"}),
        "/compliance/audit_level",
        "invalid_audit_level",
        id="audit-level-unknown",
    ),
    pytest.param(
        seed(compliance={"audit_level": "basic", "data_retention_days": 0}),
        "/compliance/data_retention_days",
        "out_of_range",
        id="retention-zero",
    ),
    pytest.param(
        seed(compliance={"audit_level": "basic", "data_retention_days": True}),
        "/compliance/data_retention_days",
        "invalid_type",
        id="retention-bool",
    ),
    pytest.param(
        seed(compliance={"audit_level": "basic", "auditlevel": 1}),
        "/compliance/auditlevel",
        "unknown_field",
        id="compliance-unknown-key",
    ),
    pytest.param(
        phi(security={**AUTH, "data_classification": ["internal"]}),
        "/security/data_classification",
        "missing_classification",
        id="phi-without-phi-class",
    ),
    pytest.param(
        phi(compliance={"hipaa_controls": [], "audit_level": "detailed"}),
        "/compliance/hipaa_controls",
        "missing_hipaa_controls",
        id="phi-without-controls",
    ),
    pytest.param(
        phi(compliance={"hipaa_controls": ["164.312(a)"], "audit_level": "basic"}),
        "/compliance/audit_level",
        "audit_level_too_low",
        id="phi-audit-basic",
    ),
    pytest.param(
        phi(
            compliance={
                "hipaa_controls": ["164.312(a)"],
                "audit_level": "complete",
                "data_retention_days": 30,
            }
        ),
        "/compliance/data_retention_days",
        "retention_too_short",
        id="phi-retention-short",
    ),
    pytest.param(
        seed(security={**AUTH, "data_classification": ["internal"]}),
        "/security/data_classification",
        "missing_classification",
        id="pii-without-pii-class",
    ),
    pytest.param(
        seed(compliance={"audit_level": "none"}),
        "/compliance/audit_level",
        "audit_level_too_low",
        id="pii-audit-none",
    ),
    pytest.param(
        without(simple("plain"), "compliance"),
        "/compliance/audit_level",
        "audit_level_too_low",
        id="audit-required-no-compliance",
    ),
    pytest.param(
        simple("mailer", traits=["external_service"]),
        "/allowed_domains",
        "missing_allowed_domains",
        id="external-without-domains",
    ),
    pytest.param(
        simple("leaky", security={**AUTH, "data_classification": ["internal", "pii"]}),
        "/security/data_classification/1",
        "classification_without_trait",
        id="pii-class-without-trait",
    ),
    pytest.param(
        seed(security={**AUTH, "data_classification": ["pii", "phi"]}),
        "/security/data_classification/1",
        "classification_without_trait",
        id="phi-class-without-trait",
    ),
    pytest.param(
        seed(health_check={"type": "grpc", "port": 80}),
        "/health_check/type",
        "invalid_health_check_type",
        id="health-type",
    ),
    pytest.param(
        seed(health_check={"type": "http", "port": 0}),
        "/health_check/port",
        "out_of_range",
        id="health-port-0",
    ),
    pytest.param(
        seed(health_check={"type": "http", "port": True}),
        "/health_check/port",
        "invalid_type",
        id="health-port-bool",
    ),
    pytest.param(
        seed(health_check={"type": "http", "port": 80, "path": "health"}),
        "/health_check/path",
        "invalid_path",
        id="health-path",
    ),
    pytest.param(
        seed(health_check={"type": "http"}),
        "/health_check/port",
        "missing_field",
        id="health-port-missing",
    ),
    pytest.param(
        seed(resources={"memory_limit": 32}),
        "/resources/memory_limit",
        "out_of_range",
        id="memory-low",
    ),
    pytest.param(
        seed(resources={"memory_limit": 10**400}),
        "/resources/memory_limit",
        "out_of_range",
        id="memory-huge",
    ),
    pytest.param(
        seed(resources={"memory_limit": True}),
        "/resources/memory_limit",
        "invalid_type",
        id="memory-bool",
    ),
    pytest.param(
        seed(resources={"memory_limit": 512.5}),
        "/resources/memory_limit",
        "invalid_type",
        id="memory-float",
    ),
    pytest.param(
        seed(resources={"cpu_limit": 0.05}), "/resources/cpu_limit", "out_of_range", id="cpu-low"
    ),
    pytest.param(
        seed(resources={"cpu_limit": 8.5}), "/resources/cpu_limit", "out_of_range", id="cpu-high"
    ),
    pytest.param(
        seed(resources={"cpu_limit": math.nan}),
        "/resources/cpu_limit",
        "invalid_type",
        id="cpu-nan",
    ),
    pytest.param(
        seed(resources={"cpu_limit": True}), "/resources/cpu_limit", "invalid_type", id="cpu-bool"
    ),
    pytest.param(
        seed(resources={"disk": 1}), "/resources/disk", "unknown_field", id="resources-unknown"
    ),
    pytest.param(seed(base_url="ftp://x.com"), "/base_url", "invalid_base_url", id="url-ftp"),
    pytest.param(
        seed(base_url="http://u:p@x.com"), "/base_url", "invalid_base_url", id="url-userinfo"
    ),
    pytest.param(seed(base_url="http://x.com/?q=1"), "/base_url", "invalid_base_url", id="url-q"),
    pytest.param(seed(base_url="http://x.com/#f"), "/base_url", "invalid_base_url", id="url-frag"),
    pytest.param(seed(base_url="http://"), "/base_url", "invalid_base_url", id="url-no-host"),
    pytest.param(seed(base_url="http://x:99999"), "/base_url", "invalid_base_url", id="url-port"),
    pytest.param(
        seed(events={"publishes": ["Nope"]}),
        "/events/publishes/0",
        "unknown_event_type",
        id="event-unknown",
    ),
    pytest.param(
        simple("nosy", events={"subscribes": ["UserCreated"]}, endpoints={"events": "/events"}),
        "/events/subscribes/0",
        "event_not_covered",
        id="event-not-covered",
    ),
    pytest.param(
        seed(events={"subscribes": ["UserCreated"]}),
        "/endpoints/events",
        "missing_events_endpoint",
        id="subscriber-without-endpoint",
    ),
    pytest.param(
        seed(events={"publishes": ["UserCreated", "UserCreated"]}),
        "/events/publishes/1",
        "duplicate_event_type",
        id="event-duplicate",
    ),
    pytest.param(seed(events={"emits": []}), "/events/emits", "unknown_field", id="events-key"),
    pytest.param(seed(**{"x-bad": math.inf}), "/x-bad", "not_json", id="x-extension-not-json"),
]


@pytest.mark.parametrize(("manifest", "path", "code"), INVALID)
def test_each_rule_reports_its_code_and_path(
    manifest: dict[str, Any], path: str, code: str
) -> None:
    result = validate_manifest(manifest)
    assert (path, code) in {(p.path, p.code) for p in result.errors}, result.errors
    assert result.manifest is None
    assert not result.ok


def test_blocklisted_domain() -> None:
    m = seed(allowed_domains=["api.evil.com"])
    assert errors(m) == set()
    assert errors(m, blocklist=["evil.com"]) == {("/allowed_domains/0", "blocked_domain")}


def test_unknown_field_has_did_you_mean() -> None:
    (problem,) = validate_manifest(seed(trait=["x"])).errors
    assert "did you mean 'traits'" in problem.message


def test_all_problems_at_once() -> None:
    m = seed(
        id="Bad Id",
        version="one",
        traits=["handles_pii", "admin"],
        allowed_domains=["localhost"],
        resources={"memory_limit": 1},
    )
    assert errors(m) == {
        ("/id", "invalid_id"),
        ("/version", "invalid_version"),
        ("/traits/1", "forbidden_trait"),
        ("/allowed_domains/0", "internal_name"),
        ("/resources/memory_limit", "out_of_range"),
    }


def test_warnings() -> None:
    m = without(seed(dependencies=["billing"]), "description")
    result = validate_manifest(m, known_plugins={"other"})
    assert result.ok
    assert {(p.path, p.code) for p in result.warnings} == {
        ("/description", "missing_description"),
        ("/dependencies/0", "unknown_dependency"),
    }
    assert validate_manifest(m, known_plugins={"billing"}).warnings[0].code == (
        "missing_description"
    )
    assert all(set(p.to_dict()) == {"path", "code", "message"} for p in result.warnings)


class Weird:
    pass


def _deep(levels: int) -> list[Any]:
    out: list[Any] = []
    for _ in range(levels):
        out = [out]
    return out


DEEP = _deep(5000)


GARBAGE = [
    pytest.param(None, id="none"),
    pytest.param([], id="list"),
    pytest.param("manifest", id="str"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param(42, id="int"),
    pytest.param(10**5000, id="huge-int"),
    pytest.param(math.nan, id="nan"),
    pytest.param({1: 2}, id="int-key"),
    pytest.param({"id": None, "traits": None, "security": None}, id="nulls"),
    pytest.param(
        {"security": {"data_classification": [[], {}, None, math.nan]}}, id="classes-garbage"
    ),
    pytest.param(
        {"allowed_domains": [None, [], {}, "*.", "*.*.com", "[::1]", "a" * 300]},
        id="domains-garbage",
    ),
    pytest.param({"endpoints": {1: "/x", "a": None}}, id="endpoints-garbage"),
    pytest.param(
        {"events": {"publishes": "UserCreated", "subscribes": [None, 1]}}, id="events-garbage"
    ),
    pytest.param(
        {"compliance": {"hipaa_controls": [1], "audit_level": [], "data_retention_days": 10**5000}},
        id="compliance-garbage",
    ),
    pytest.param(
        {"health_check": {"type": None, "port": 10**5000, "path": []}}, id="health-garbage"
    ),
    pytest.param(
        {"resources": {"memory_limit": math.inf, "cpu_limit": -math.inf}}, id="resources-inf"
    ),
    pytest.param({"x-deep": DEEP}, id="deeply-nested-extension"),
    pytest.param({"x-obj": Weird(), "x-set": {1, 2}}, id="non-json-extension"),
    pytest.param({"base_url": "http://[::1"}, id="broken-url"),
    pytest.param(seed(traits=["handles_phi"], compliance=[]), id="phi-compliance-list"),
]


@pytest.mark.parametrize("data", GARBAGE)
def test_garbage_never_raises(data: Any) -> None:
    result = validate_manifest(data)
    assert not result.ok
    assert result.manifest is None
    assert all(p.code != "invalid_manifest" for p in result.errors), result.errors


SEED_VALUES: list[Any] = [None, True, 0, -1, 10**5000, math.nan, "", "x", [], {}, [None], Weird()]


@pytest.mark.parametrize("field", [*sorted(SEED_USER_MANAGEMENT), "base_url", "events"])
def test_every_field_tolerates_every_wrong_value(field: str) -> None:
    for value in SEED_VALUES:
        result = validate_manifest(seed(**{field: value}))
        assert all(p.code != "invalid_manifest" for p in result.errors), (value, result.errors)


def test_returned_manifest_is_normalised_copy() -> None:
    m = seed(
        allowed_domains=["BÜCHER.de", "*.Example.COM"],
        health_check={"type": "http", "port": 9000},
        **{"x-extra": {"a": [1]}},
    )
    result = validate_manifest(m)
    assert result.manifest is not None
    out = result.manifest
    assert out["allowed_domains"] == ["xn--bcher-kva.de", "*.example.com"]
    assert out["base_url"] == "http://user-management:9000"
    assert out["health_check"]["path"] == "/health"
    assert out["x-extra"] == {"a": [1]}
    out["x-extra"]["a"].append(2)
    out["security"]["data_classification"].append("phi")
    assert m["x-extra"] == {"a": [1]}
    assert m["security"]["data_classification"] == ["pii", "internal"]


def test_base_url_default_and_override() -> None:
    ok = validate_manifest(seed()).manifest
    assert ok is not None
    assert ok["base_url"] == "http://user-management:8000"
    given = validate_manifest(seed(base_url="https://users.example.com/")).manifest
    assert given is not None
    assert given["base_url"] == "https://users.example.com"


def test_reserved_ids_are_valid_ids_otherwise() -> None:
    for rid in RESERVED_IDS:
        assert errors(seed(id=rid)) == {("/id", "reserved_id")} or len(rid) < 3


@pytest.mark.parametrize(
    ("contract", "alias"),
    [
        pytest.param("IdentityPlugin", "identity", id="identity"),
        pytest.param("CommunicationPlugin", "communication", id="communication"),
        pytest.param("ReportPlugin", "report", id="report"),
        pytest.param("UserDirectoryPlugin", "user-directory", id="two-words"),
        pytest.param("HTTPGatewayPlugin", "http-gateway", id="acronym"),
    ],
)
def test_contract_alias(contract: str, alias: str) -> None:
    assert contract_alias(contract) == alias


@pytest.mark.parametrize(
    ("graph", "cycles"),
    [
        pytest.param({"a": ["b"], "b": ["c"], "c": []}, [], id="acyclic"),
        pytest.param({"a": ["b"], "b": ["a"]}, [["a", "b"]], id="pair"),
        pytest.param({"a": ["a"]}, [["a"]], id="self"),
        pytest.param(
            {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["e"], "e": ["d"], "f": ["a"]},
            [["a", "b", "c"], ["d", "e"]],
            id="two-cycles",
        ),
        pytest.param({"a": ["missing"]}, [], id="dangling"),
    ],
)
def test_find_dependency_cycles(graph: dict[str, list[str]], cycles: list[list[str]]) -> None:
    assert find_dependency_cycles(graph) == cycles


def test_long_chain_has_no_recursion_limit() -> None:
    graph = {f"n{i}": [f"n{i + 1}"] for i in range(5000)}
    graph["n5000"] = ["n0"]
    (cycle,) = find_dependency_cycles(graph)
    assert len(cycle) == 5001


def test_tcp_health_check_has_no_path() -> None:
    result = validate_manifest(seed(health_check={"type": "tcp", "port": 5432}))
    assert result.ok
    assert result.manifest is not None
    assert result.manifest["health_check"] == {"type": "tcp", "port": 5432}
