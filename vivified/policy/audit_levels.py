"""Audit levels: their order, what each adds to a record, and which level a call gets.

A manifest declares `compliance.audit_level` (none < basic < detailed < complete). A call
involves two parties (caller and target, publisher and subscriber; on the proxy lane the
plugin alone) and is recorded at the strictest level among them, never below what the
parties' traits and data classifications require (`required_level`). `none` skips the record
of an allowed call only; a denial is always recorded.

What each level adds to the record's `detail` (`added_fields`):
- `basic`: nothing; the record of old (lane, parties, decision, status, sizes, latency).
- `detailed`: the route template's parameter names (`params`), the request and response
  sizes and content types, the policy inputs that decided it (`policy`: traits,
  classification, grant id).
- `complete`: also the names (never the values) of the request and response headers and a
  SHA-256 of each body (hex).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

LEVELS: tuple[str, ...] = ("none", "basic", "detailed", "complete")
DEFAULT_LEVEL = "basic"  # a plugin that declares no level keeps today's record

DETAILED_FIELDS: frozenset[str] = frozenset(
    {
        "params",
        "request_size",
        "response_size",
        "request_content_type",
        "response_content_type",
        "policy",
    }
)
COMPLETE_FIELDS: frozenset[str] = DETAILED_FIELDS | {
    "request_headers",
    "response_headers",
    "request_sha256",
    "response_sha256",
}
_ADDED: Mapping[str, frozenset[str]] = {
    "none": frozenset(),
    "basic": frozenset(),
    "detailed": DETAILED_FIELDS,
    "complete": COMPLETE_FIELDS,
}


def rank(level: object) -> int:
    """The position of `level` in the order; an unknown or missing level counts as the
    default (`basic`), never as `none`."""
    if isinstance(level, str) and level in LEVELS:
        return LEVELS.index(level)
    return LEVELS.index(DEFAULT_LEVEL)


def declared_level(manifest: Mapping[str, Any]) -> str:
    """The level a manifest declares (`compliance.audit_level`), else the default."""
    compliance = manifest.get("compliance")
    level = compliance.get("audit_level") if isinstance(compliance, Mapping) else None
    return LEVELS[rank(level)]


def required_level(traits: Collection[str], classification: Collection[str]) -> str:
    """The least level the rules allow for a plugin: PHI needs `detailed`, PII or
    `audit_required` need `basic`; nothing else needs a record of allowed calls."""
    if "handles_phi" in traits or "phi" in classification:
        return "detailed"
    if {"handles_pii", "audit_required"} & set(traits) or "pii" in classification:
        return "basic"
    return "none"


def effective_level(declared: str, traits: Collection[str], classification: Collection[str]) -> str:
    """A plugin's level: what it declares, raised to what its traits and data require."""
    return strictest((declared, required_level(traits, classification)))


def strictest(levels: Iterable[str]) -> str:
    """The highest of `levels` (`none` when there are none)."""
    return LEVELS[max((rank(level) for level in levels), default=0)]


def records(level: str, decision: str) -> bool:
    """Whether a call at `level` with `decision` (allow, deny, ...) is recorded at all."""
    return decision != "allow" or rank(level) > 0


def added_fields(level: str) -> frozenset[str]:
    """The `detail` keys `level` adds to the record of old."""
    return _ADDED[LEVELS[rank(level)]]


def wants_hash(level: str) -> bool:
    """Whether bodies are hashed (and header names kept) at this level."""
    return rank(level) >= LEVELS.index("complete")


def level_detail(level: str, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `facts` that `level` records (a missing fact is recorded as None)."""
    return {key: facts.get(key) for key in sorted(added_fields(level))}
