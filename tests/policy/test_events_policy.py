"""Event-lane decisions, one row per rule."""

from __future__ import annotations

import pytest

from vivified.policy.events import decide_delivery, decide_publish


@pytest.mark.parametrize(
    ("status", "declared", "kind", "known", "reason"),
    [
        pytest.param("active", ["UserCreated"], "UserCreated", True, "declared", id="declared"),
        pytest.param("active", ["UserCreated"], "Nope", False, "unknown_event_type", id="unknown"),
        pytest.param(
            "disabled",
            ["UserCreated"],
            "UserCreated",
            True,
            "publisher_not_active",
            id="disabled-publisher",
        ),
        pytest.param("active", [], "UserCreated", True, "not_declared", id="undeclared"),
    ],
)
def test_decide_publish(
    status: str, declared: list[str], kind: str, known: bool, reason: str
) -> None:
    d = decide_publish(status=status, declared=declared, event_type=kind, known=known)
    assert d.reason == reason
    assert d.allowed is (reason == "declared")


@pytest.mark.parametrize(
    ("status", "traits", "classification", "reason"),
    [
        pytest.param("active", ["handles_pii"], "pii", "subscribed", id="pii-with-trait"),
        pytest.param("active", ["handles_phi"], "pii", "subscribed", id="phi-trait-covers-pii"),
        pytest.param(
            "active",
            ["audit_required"],
            "pii",
            "classification_not_covered",
            id="pii-without-trait",
        ),
        pytest.param(
            "active", ["handles_pii"], "phi", "classification_not_covered", id="phi-needs-phi-trait"
        ),
        pytest.param(
            "active", ["audit_required"], "confidential", "subscribed", id="confidential-audited"
        ),
        pytest.param(
            "active",
            ["external_service"],
            "confidential",
            "classification_not_covered",
            id="confidential-unaudited",
        ),
        pytest.param("active", [], "internal", "subscribed", id="internal-anyone"),
        pytest.param("disabled", ["handles_pii"], "pii", "subscriber_not_active", id="disabled"),
    ],
)
def test_decide_delivery(status: str, traits: list[str], classification: str, reason: str) -> None:
    d = decide_delivery(
        status=status,
        subscribed=["E"],
        traits=traits,
        event_type="E",
        classification=classification,
    )
    assert d.reason == reason


def test_unsubscribed_types_are_not_delivered() -> None:
    d = decide_delivery(
        status="active", subscribed=["A"], traits=[], event_type="B", classification="internal"
    )
    assert (d.allowed, d.reason) == (False, "not_subscribed")


@pytest.mark.parametrize(
    ("health", "classification", "allowed"),
    [
        pytest.param("unhealthy", "pii", False, id="unhealthy-pii"),
        pytest.param("unhealthy", "phi", False, id="unhealthy-phi"),
        pytest.param("unhealthy", "internal", True, id="unhealthy-internal-ok"),
        pytest.param("degraded", "pii", True, id="degraded-pii-ok"),
    ],
)
def test_unhealthy_publishers_cannot_emit_sensitive_events(
    health: str, classification: str, allowed: bool
) -> None:
    d = decide_publish(
        status="active",
        declared=["E"],
        event_type="E",
        known=True,
        health=health,
        classification=classification,
    )
    assert d.allowed is allowed
    if not allowed:
        assert d.reason == "publisher_unhealthy"
