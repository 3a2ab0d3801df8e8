"""The canonical event lane's decisions: who may publish a type, who may receive an event.

Refusals carry reason codes only: how a transport answers them is not policy's business."""

from __future__ import annotations

from collections.abc import Collection

from vivified.policy.decision import Decision

SENSITIVE = frozenset({"pii", "phi", "confidential"})


def can_receive(traits: Collection[str], classification: str) -> bool:
    """Whether a plugin with `traits` may receive data of `classification` (default deny for
    a classification this rule does not know)."""
    have = set(traits)
    if classification == "phi":
        return "handles_phi" in have
    if classification == "pii":
        return bool(have & {"handles_pii", "handles_phi"})
    if classification == "confidential":
        return bool(have & {"handles_pii", "handles_phi", "audit_required"})
    return classification in {"public", "internal"}


def decide_publish(
    *,
    status: str,
    declared: Collection[str],
    event_type: str,
    known: bool,
    health: str = "unknown",
    classification: str = "internal",
) -> Decision:
    """May an authenticated plugin publish `event_type`? Unhealthy publishers may not emit
    sensitive events."""
    if not known:
        return Decision.deny("unknown_event_type", f"{event_type!r} is not a canonical type")
    if status != "active":
        return Decision.deny("publisher_not_active", f"the publisher is {status}")
    if event_type not in declared:
        return Decision.deny(
            "not_declared", f"declare {event_type!r} in events.publishes and re-register"
        )
    if health == "unhealthy" and classification in SENSITIVE:
        return Decision.deny(
            "publisher_unhealthy", f"an unhealthy plugin may not publish {classification} events"
        )
    return Decision.allow("declared")


def decide_delivery(
    *,
    status: str,
    subscribed: Collection[str],
    traits: Collection[str],
    event_type: str,
    classification: str,
) -> Decision:
    """May this event be delivered to this subscriber now?"""
    if status != "active":
        return Decision.deny("subscriber_not_active", f"the subscriber is {status}")
    if event_type not in subscribed:
        return Decision.deny("not_subscribed", f"the subscriber does not take {event_type}")
    if not can_receive(traits, classification):
        return Decision.deny(
            "classification_not_covered",
            f"{classification} events reach only plugins with the matching trait",
        )
    return Decision.allow("subscribed")
