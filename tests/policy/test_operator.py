"""The operator-lane decision, one row per rule."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from vivified.policy.operator import decide_call


@dataclass(frozen=True)
class Party:
    id: str
    status: str = "active"
    health: str = "unknown"
    traits: frozenset[str] = frozenset({"audit_required"})
    classification: frozenset[str] = frozenset({"internal"})
    dependencies: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Grant:
    id: str
    caller: str
    target: str
    methods: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()


A = Party("alpha", dependencies=frozenset({"beta"}))
B = Party("beta")
G = Party("gamma")
PII = Party("store", classification=frozenset({"pii", "internal"}))
PHI = Party("chart", classification=frozenset({"phi"}))
A_PII = replace(A, dependencies=frozenset({"store", "chart"}))
READER = Party("reader", traits=frozenset({"handles_pii"}), dependencies=frozenset({"store"}))
DOCTOR = Party(
    "doctor", traits=frozenset({"handles_phi"}), dependencies=frozenset({"chart", "store"})
)
GRANT = Grant("g1", "gamma", "beta", frozenset({"GET"}), ("/api/items/*",))

CASES = [
    pytest.param(None, B, "GET", (), False, "unknown_caller", id="unknown-caller"),
    pytest.param(
        replace(A, status="disabled"),
        B,
        "GET",
        (),
        False,
        "caller_not_active",
        id="caller-disabled",
    ),
    pytest.param(
        replace(A, status="registered"),
        B,
        "GET",
        (),
        False,
        "caller_not_active",
        id="caller-unapproved",
    ),
    pytest.param(A, None, "GET", (), False, "unknown_target", id="unknown-target"),
    pytest.param(
        A,
        replace(B, status="disabled"),
        "GET",
        (),
        False,
        "target_not_active",
        id="target-disabled",
    ),
    pytest.param(
        A,
        replace(B, health="unhealthy"),
        "GET",
        (),
        False,
        "target_unhealthy",
        id="target-unhealthy",
    ),
    pytest.param(
        A, replace(B, health="degraded"), "GET", (), True, "dependency", id="target-degraded-ok"
    ),
    pytest.param(A, B, "GET", (), True, "dependency", id="dependency"),
    pytest.param(G, B, "GET", (), False, "not_permitted", id="no-relationship"),
    pytest.param(G, B, "GET", (GRANT,), True, "grant", id="grant"),
    pytest.param(G, B, "get", (GRANT,), True, "grant", id="grant-method-any-case"),
    pytest.param(G, B, "POST", (GRANT,), False, "not_permitted", id="grant-wrong-method"),
    pytest.param(
        G, B, "DELETE", (Grant("g4", "gamma", "beta"),), True, "grant", id="grant-any-method"
    ),
    pytest.param(B, B, "GET", (), False, "not_permitted", id="self-call-needs-relationship"),
    pytest.param(
        replace(B, dependencies=frozenset({"beta"})),
        B,
        "GET",
        (),
        True,
        "dependency",
        id="self-dep",
    ),
    pytest.param(
        G, Party("delta"), "GET", (GRANT,), False, "not_permitted", id="grant-other-target"
    ),
    pytest.param(
        A,
        G,
        "GET",
        (Grant("g2", "gamma", "alpha"),),
        False,
        "not_permitted",
        id="grant-is-directional",
    ),
    pytest.param(A_PII, PII, "GET", (), False, "pii_trait_required", id="pii-gate"),
    pytest.param(READER, PII, "GET", (), True, "dependency", id="pii-with-trait"),
    pytest.param(A_PII, PHI, "GET", (), False, "phi_trait_required", id="phi-gate"),
    pytest.param(
        READER,
        PHI,
        "GET",
        (Grant("g3", "reader", "chart"),),
        False,
        "phi_trait_required",
        id="pii-trait-not-enough-for-phi",
    ),
    pytest.param(DOCTOR, PHI, "GET", (), True, "dependency", id="phi-with-trait"),
    pytest.param(DOCTOR, PII, "GET", (), True, "dependency", id="phi-trait-covers-pii"),
    pytest.param(
        replace(DOCTOR, health="unhealthy"),
        PHI,
        "GET",
        (),
        False,
        "caller_unhealthy",
        id="unhealthy-caller-sensitive",
    ),
    pytest.param(
        replace(A, health="unhealthy"),
        replace(B, classification=frozenset({"confidential"})),
        "GET",
        (),
        False,
        "caller_unhealthy",
        id="unhealthy-caller-confidential",
    ),
    pytest.param(
        replace(A, health="unhealthy"),
        replace(B, health="degraded"),
        "GET",
        (),
        True,
        "dependency",
        id="unhealthy-caller-degraded-internal-ok",
    ),
    pytest.param(
        replace(A, health="unhealthy"),
        B,
        "GET",
        (),
        True,
        "dependency",
        id="unhealthy-caller-internal-ok",
    ),
]


@pytest.mark.parametrize(("caller", "target", "method", "grants", "allowed", "reason"), CASES)
def test_decide_call(
    caller: Party | None,
    target: Party | None,
    method: str,
    grants: tuple[Grant, ...],
    allowed: bool,
    reason: str,
) -> None:
    decision = decide_call(caller, target, method=method, path="/api/items/1", grants=grants)
    assert (decision.allowed, decision.reason) == (allowed, reason)
    assert decision.detail


def test_grant_path_patterns_limit_the_grant() -> None:
    assert not decide_call(G, B, method="GET", path="/api/other/1", grants=(GRANT,))
    assert decide_call(G, B, method="GET", path="/api/items/9", grants=(GRANT,))


def test_grant_detail_names_the_grant_and_denial_says_what_to_do() -> None:
    assert "g1" in decide_call(G, B, method="GET", path="/api/items/9", grants=(GRANT,)).detail
    denied = decide_call(G, B, method="GET", path="/api/items/9", grants=())
    assert "dependencies" in denied.detail
    assert "grant" in denied.detail


def test_lowercase_grant_methods_still_match() -> None:
    grant = Grant("g5", "gamma", "beta", frozenset({"get"}))
    assert decide_call(G, B, method="GET", path="/api/x", grants=(grant,)).reason == "grant"
