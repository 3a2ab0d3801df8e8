"""diff_manifests (widening vs narrowing), risk_rating and needs_approval."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.manifests import seed, simple

from vivified.registry.manifest.diff import diff_manifests, needs_approval, risk_rating
from vivified.registry.manifest.validator import validate_manifest

AUTH: dict[str, Any] = {"authentication_required": True}


def norm(manifest: dict[str, Any]) -> dict[str, Any]:
    result = validate_manifest(manifest)
    assert result.manifest is not None, result.errors
    return result.manifest


BASE = seed(
    dependencies=["billing"],
    allowed_domains=["api.example.com"],
    events={"publishes": ["UserCreated"]},
)


@pytest.mark.parametrize(
    ("new", "widened", "field"),
    [
        pytest.param(BASE, False, None, id="same"),
        pytest.param(seed(**{**BASE, "traits": [*BASE["traits"], "external_service"]}), True,
                     "traits", id="trait-added"),
        pytest.param(seed(**{**BASE, "traits": ["handles_pii"]}), False, None, id="trait-removed"),
        pytest.param(
            seed(**{**BASE, "security": {**AUTH, "data_classification": ["pii", "internal",
                                                                          "confidential"]}}),
            True, "security.data_classification", id="classification-added",
        ),
        pytest.param(seed(**{**BASE, "allowed_domains": ["api.example.com", "x.example.org"]}),
                     True, "allowed_domains", id="domain-added"),
        pytest.param(seed(**{**BASE, "allowed_domains": []}), False, None, id="domain-removed"),
        pytest.param(seed(**{**BASE, "dependencies": ["billing", "mailer"]}), True,
                     "dependencies", id="dependency-added"),
        pytest.param(seed(**{**BASE, "contracts": ["IdentityPlugin", "ReportPlugin"]}), True,
                     "contracts", id="contract-added"),
        pytest.param(seed(**{**BASE, "events": {"publishes": ["UserCreated", "UserDeleted"]}}),
                     True, "events.publishes", id="publishes-added"),
        pytest.param(
            seed(**{**BASE, "events": {"publishes": ["UserCreated"], "subscribes": ["AuditAlert"]},
                    "endpoints": {**BASE["endpoints"], "events": "/events"}}),
            True, "events.subscribes", id="subscribes-added",
        ),
        pytest.param(seed(**{**BASE, "endpoints": {"health": "/health"}}), False, None,
                     id="endpoint-removed"),
        pytest.param(seed(**{**BASE, "endpoints": {**BASE["endpoints"], "x": "/api/x"}}), True,
                     "endpoints", id="endpoint-added"),
        pytest.param(seed(**{**BASE, "base_url": "https://elsewhere.example.com"}), True,
                     "base_url", id="base-url-changed"),
        pytest.param(seed(**{**BASE, "compliance": {"audit_level": "basic"}}), True,
                     "compliance.audit_level", id="audit-lowered"),
        pytest.param(seed(**{**BASE, "compliance": {"audit_level": "complete"}}), False,
                     "compliance.audit_level", id="audit-raised"),
        pytest.param(seed(**{**BASE, "version": "2.0.0", "name": "Renamed"}), False, "version",
                     id="version-bump"),
    ],
)  # fmt: skip
def test_widening(new: dict[str, Any], widened: bool, field: str | None) -> None:
    diff = diff_manifests(norm(BASE), norm(new))
    assert diff.widened is widened
    touched = set(diff.added) | set(diff.removed) | set(diff.changed)
    if field is None:
        assert touched <= {"traits", "allowed_domains", "endpoints"}
    else:
        assert field in touched
    encoded = json.loads(json.dumps(diff.to_dict()))
    assert encoded["widened"] is widened
    assert set(encoded) == {"widened", "widening", "added", "removed", "changed"}
    assert bool(encoded["widening"]) is widened


def items_at(template: str) -> dict[str, Any]:
    return simple("tpl", endpoints={"health": "/health", "items": template})


@pytest.mark.parametrize(
    ("old", "new", "widened"),
    [
        # more paths (or not provably fewer): widening
        pytest.param("/api/items/{id}", "/api/{rest:path}", True, id="param-to-catch-all"),
        pytest.param("/api/items/me", "/api/items/{id}", True, id="literal-to-param"),
        pytest.param("/api/items/{id}", "/api/items/{id}/{rest:path}", True,
                     id="added-path-segment"),
        pytest.param("/api/items/{id}", "/api/items/{rest:path}", True, id="param-to-path"),
        pytest.param("/api/items/{id}", "/api/{kind}/{id}", True, id="literal-to-param-prefix"),
        pytest.param("/api/items/a", "/api/items/b", True, id="literal-changed"),
        pytest.param("/api/items/{id}", "/api/items/{id}/", True, id="trailing-slash-added"),
        pytest.param("/api/items/{id}", "/api/items/{id}/x", True, id="segment-appended"),
        pytest.param("/api/items/{rest:path}", "/api/items", True, id="catch-all-to-its-base"),
        pytest.param("/api/{rest:path}", "/api/", True, id="catch-all-to-empty-tail"),
        pytest.param("/api/items/{id}", "/api/items-{id}", True, id="unparsable-is-widening"),
        pytest.param("/api/items/{id}", "/api/{a:path}/x/{b:path}", True,
                     id="path-param-not-last-is-widening"),
        pytest.param("/events", "/api/{rest:path}", True, id="webhook-to-routable-catch-all"),
        pytest.param("/events", "/hooks/in", True, id="other-literal-path"),
        # a subset of what was approved: accepted at once
        pytest.param("/api/items/{id}", "/api/items/me", False, id="narrowing-literal"),
        pytest.param("/api/items/{id}", "/api/items/{item_id}", False, id="param-renamed"),
        pytest.param("/api/{rest:path}", "/api/items/{id}", False, id="catch-all-to-param"),
        pytest.param("/api/{rest:path}", "/api/items/{rest:path}", False,
                     id="catch-all-to-deeper-catch-all"),
        pytest.param("/api/{rest:path}", "/api/items/", False, id="catch-all-to-trailing-slash"),
        pytest.param("/api/{rest:path}", "/api/{tail:path}", False, id="catch-all-renamed"),
        pytest.param("/api/{a}/{rest:path}", "/api/x/y/{rest:path}", False,
                     id="within-param-then-catch-all"),
    ],
)  # fmt: skip
def test_endpoint_template_change(old: str, new: str, widened: bool) -> None:
    diff = diff_manifests(norm(items_at(old)), norm(items_at(new)))
    assert diff.widened is widened
    assert diff.changed == {"endpoints.items": {"old": old, "new": new}}  # shown in the diff
    assert diff.added == diff.removed == {}
    assert diff.to_dict()["widening"] == (["endpoints.items"] if widened else [])


@pytest.mark.parametrize(
    ("new", "widening"),
    [
        pytest.param({"base_url": "http://other-host:8000"}, ["base_url"], id="base-url-change"),
        pytest.param({"health_check": {"type": "http", "port": 9000}}, ["base_url"],
                     id="default-base-url-moves-with-port"),
        pytest.param({"endpoints": {"health": "/health", "items": "/api/{rest:path}"},
                      "base_url": "http://other-host:8000"}, ["base_url", "endpoints.items"],
                     id="catch-all-and-base-url"),
        pytest.param({"endpoints": {"health": "/health", "items": "/api/items/me"}}, [],
                     id="narrowing-literal"),
        pytest.param({"version": "1.0.1"}, [], id="version-only"),
    ],
)  # fmt: skip
def test_widening_fields_are_listed(new: dict[str, Any], widening: list[str]) -> None:
    diff = diff_manifests(norm(simple("tpl")), norm(simple("tpl", **new)))
    assert diff.widened is bool(widening)
    assert diff.to_dict()["widening"] == widening


def test_template_change_on_odd_shapes_is_widening() -> None:
    old = {"endpoints": {"items": "/api/items/{id}"}}
    assert diff_manifests(old, {"endpoints": {"items": 7}}).widened
    assert diff_manifests({"endpoints": {"items": None}}, old).widened


def test_diff_lists_items() -> None:
    old = norm(BASE)
    new = norm(seed(**{**BASE, "traits": ["handles_pii"], "dependencies": ["billing", "mailer"]}))
    diff = diff_manifests(old, new)
    assert diff.added == {"dependencies": ["mailer"]}
    assert diff.removed == {"traits": ["audit_required"]}
    assert diff.changed == {}


def test_diff_tolerates_odd_shapes() -> None:
    diff = diff_manifests({"traits": "x", "security": []}, {"traits": [["a"], "b"]})
    assert diff.added == {"traits": ["b"]}
    assert diff.widened


@pytest.mark.parametrize(
    ("manifest", "level", "score"),
    [
        pytest.param(simple("a"), "low", 0, id="simple"),
        pytest.param(simple("a", compliance={"audit_level": "none"}), "low", 10, id="no-audit"),
        pytest.param(simple("a", dependencies=["b", "c", "d", "e"]), "low", 15, id="deps-capped"),
        pytest.param(seed(), "medium", 25, id="pii"),
        pytest.param(
            simple("a", traits=["external_service"], allowed_domains=["a.example.com"]),
            "medium",
            21,
            id="egress",
        ),
        pytest.param(
            seed(traits=["handles_phi"], security={**AUTH, "data_classification": ["phi"]}),
            "medium",
            40,
            id="phi",
        ),
        pytest.param(
            seed(
                traits=["handles_phi", "handles_pii"],
                security={**AUTH, "data_classification": ["phi", "pii"]},
            ),
            "high",
            65,
            id="phi-pii",
        ),
        pytest.param(
            seed(
                traits=["handles_phi", "handles_pii", "external_service"],
                allowed_domains=["a.example.com", "b.example.com"],
                security={**AUTH, "data_classification": ["phi", "pii", "confidential"]},
                dependencies=["x-y"],
                compliance={"audit_level": "none"},
            ),
            "critical",
            112,
            id="everything",
        ),
    ],
)
def test_risk_rating(manifest: dict[str, Any], level: str, score: int) -> None:
    risk = risk_rating(manifest)
    assert (risk.level, risk.score) == (level, score)
    assert json.loads(json.dumps(risk.to_dict())) == {
        "level": level,
        "score": score,
        "factors": list(risk.factors),
    }


def test_risk_rating_of_garbage() -> None:
    assert risk_rating({"traits": None, "security": "x"}).level == "low"


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        pytest.param(simple("a"), False, id="simple"),
        pytest.param(
            simple("a", security={**AUTH, "data_classification": ["public"]}), False, id="public"
        ),
        pytest.param(seed(), True, id="pii"),
        pytest.param(
            simple("a", security={**AUTH, "data_classification": ["confidential"]}),
            True,
            id="confidential",
        ),
        pytest.param(simple("a", allowed_domains=["a.example.com"]), True, id="domains"),
        pytest.param(simple("a", traits=["external_service"]), True, id="external-trait"),
        pytest.param(simple("a", traits=["handles_phi"]), True, id="phi-trait"),
    ],
)
def test_needs_approval(manifest: dict[str, Any], expected: bool) -> None:
    assert needs_approval(manifest) is expected
