"""The Operator API lane decision: may this caller use this target, now, and why (not)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from vivified.policy.decision import Decision
from vivified.policy.paths import match_path_pattern

SENSITIVE = frozenset({"pii", "phi", "confidential"})


class PartyLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def health(self) -> str: ...
    @property
    def traits(self) -> frozenset[str]: ...
    @property
    def classification(self) -> frozenset[str]: ...
    @property
    def dependencies(self) -> frozenset[str]: ...


class GrantLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def caller(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def methods(self) -> frozenset[str]: ...
    @property
    def paths(self) -> tuple[str, ...]: ...


def _grant(
    caller: str, target: str, method: str, path: str, grants: Iterable[GrantLike]
) -> GrantLike | None:
    for g in grants:
        if g.caller != caller or g.target != target:
            continue
        if g.methods and method.upper() not in {m.upper() for m in g.methods}:
            continue
        if g.paths and not any(match_path_pattern(p, path) for p in g.paths):
            continue
        return g
    return None


def decide_call(
    caller: PartyLike | None,
    target: PartyLike | None,
    *,
    method: str,
    path: str,
    grants: Iterable[GrantLike],
) -> Decision:
    """Checked in order: caller, target, health, relationship, classification gate."""
    if caller is None:
        return Decision.deny(
            "unknown_caller", "the calling plugin is no longer registered; register it again"
        )
    if caller.status != "active":
        return Decision.deny(
            "caller_not_active", f"{caller.id} is {caller.status}; ask an admin to enable it"
        )
    if target is None:
        return Decision.deny(
            "unknown_target", "no plugin or alias by that name is registered; check the service"
        )
    if target.status != "active":
        return Decision.deny(
            "target_not_active", f"{target.id} is {target.status}; try again once it is enabled"
        )
    if target.health == "unhealthy":
        return Decision.deny(
            "target_unhealthy", f"{target.id} is failing its health checks; retry once it recovers"
        )
    if target.id in caller.dependencies:
        allowed = Decision.allow("dependency", f"{caller.id} depends on {target.id}")
    else:
        grant = _grant(caller.id, target.id, method, path, grants)
        if grant is None:
            return Decision.deny(
                "not_permitted",
                f"add {target.id!r} to {caller.id}'s dependencies or ask an admin for a grant",
            )
        allowed = Decision.allow("grant", f"admin grant {grant.id}")
    if "phi" in target.classification and "handles_phi" not in caller.traits:
        return Decision.deny(
            "phi_trait_required",
            f"{target.id} holds PHI; declare handles_phi and have an admin approve {caller.id}",
        )
    if "pii" in target.classification and not caller.traits & {"handles_pii", "handles_phi"}:
        return Decision.deny(
            "pii_trait_required",
            f"{target.id} holds PII; declare handles_pii and have an admin approve {caller.id}",
        )
    if caller.health == "unhealthy" and target.classification & SENSITIVE:
        return Decision.deny(
            "caller_unhealthy",
            f"{caller.id} is unhealthy; fix its health checks before it reaches sensitive data",
        )
    return allowed
