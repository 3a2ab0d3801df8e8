"""What changed between two manifests, whether it widens a plugin's powers, and risk ratings.

All functions accept any mapping (stored manifests included) and never raise on odd shapes.

An endpoint whose template changes widens unless every path the new template matches was
matched by the old one (the operator lane's grammar: a literal segment, `{name}` = one
non-empty segment, a last `{name:path}` = one or more segments); anything that cannot be
proved a subset (an unparsable template, another literal) counts as widening."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AUDIT_ORDER = ("none", "basic", "detailed", "complete")
SENSITIVE_TRAITS = frozenset({"handles_phi", "handles_pii", "external_service"})
LOW_CLASSIFICATIONS = frozenset({"public", "internal"})

# List fields compared as sets; an addition to any in WIDENING needs an admin's approval.
LIST_FIELDS: tuple[str, ...] = (
    "traits",
    "security.data_classification",
    "allowed_domains",
    "dependencies",
    "contracts",
    "events.publishes",
    "events.subscribes",
    "compliance.hipaa_controls",
)
WIDENING: frozenset[str] = frozenset(LIST_FIELDS) - {"compliance.hipaa_controls"} | {"endpoints"}
SCALAR_FIELDS: tuple[str, ...] = (
    "name",
    "version",
    "description",
    "base_url",
    "compliance.audit_level",
    "compliance.data_retention_days",
    "health_check",
    "resources",
    "docs",
)


_PARAM = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*(:path)?\}$")


@dataclass(frozen=True)
class _Template:
    segments: tuple[str | None, ...]  # a literal, or None for a one-segment `{param}`
    tail: bool  # ends with `{name:path}`: one or more further segments


def _parse_template(template: object) -> _Template | None:
    """The template's segments, or None when it is not plainly of the routing grammar."""
    if not isinstance(template, str) or not template.startswith("/"):
        return None
    if "//" in template or "?" in template or "#" in template or "%" in template:
        return None
    parts = template[1:].split("/")
    segments: list[str | None] = []
    tail = False
    for i, part in enumerate(parts):
        match = _PARAM.match(part)
        if match and match.group(1):
            if i != len(parts) - 1:
                return None
            tail = True
        elif match:
            segments.append(None)
        elif "{" in part or "}" in part:
            return None
        else:
            segments.append(part)  # "" only as the last: a trailing slash is significant
    return _Template(tuple(segments), tail)


def _segment_within(new: str | None, old: str | None) -> bool:
    if old is None:  # `{param}` takes any one non-empty segment
        return new != ""  # a `{param}` or a non-empty literal
    return new == old


def template_within(new: object, old: object) -> bool:
    """Whether every path template `new` matches is matched by `old` (False if unsure)."""
    if new == old:
        return True
    a, b = _parse_template(new), _parse_template(old)
    if a is None or b is None:
        return False
    n = len(b.segments)
    if not b.tail:
        return (
            not a.tail
            and len(a.segments) == n
            and all(map(_segment_within, a.segments, b.segments))
        )
    if len(a.segments) < n or not all(map(_segment_within, a.segments[:n], b.segments)):
        return False
    if a.tail:  # b's tail takes one or more segments, as many as a's extras and tail give
        return True
    extra = a.segments[n:]
    return bool(extra) and extra != ("",)  # b's tail never matches a lone empty segment


def _get(manifest: Mapping[str, Any], dotted: str) -> Any:
    value: Any = manifest
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _items(manifest: Mapping[str, Any], dotted: str) -> list[Any]:
    value = _get(manifest, dotted)
    if not isinstance(value, list | tuple):
        return []
    return [v for v in value if isinstance(v, str | int | float | bool) or v is None]


def _audit_rank(manifest: Mapping[str, Any]) -> int:
    level = _get(manifest, "compliance.audit_level")
    return AUDIT_ORDER.index(level) if level in AUDIT_ORDER else 0


def _widens(field: str, change: Mapping[str, Any]) -> bool:
    """Whether changing `field` from `change["old"]` to `change["new"]` widens."""
    old, new = change.get("old"), change.get("new")
    if field == "base_url":  # another host (or the default moving with health_check.port)
        return True
    if field.startswith("endpoints."):
        return not template_within(new, old)
    if field == "compliance.audit_level":
        old_rank = AUDIT_ORDER.index(old) if old in AUDIT_ORDER else 0
        new_rank = AUDIT_ORDER.index(new) if new in AUDIT_ORDER else 0
        return new_rank < old_rank
    return False


@dataclass(frozen=True)
class ManifestDiff:
    """`added`/`removed`: field → items; `changed`: field → {"old", "new"}."""

    added: dict[str, list[Any]]
    removed: dict[str, list[Any]]
    changed: dict[str, dict[str, Any]]

    @property
    def widening(self) -> list[str]:
        """The fields whose change needs an admin's approval (sorted)."""
        out = {field for field in self.added if field in WIDENING}
        out |= {field for field, change in self.changed.items() if _widens(field, change)}
        return sorted(out)

    @property
    def widened(self) -> bool:
        return bool(self.widening)

    def to_dict(self) -> dict[str, Any]:
        widening = self.widening
        return {
            "widened": bool(widening),
            "widening": widening,
            "added": {k: list(v) for k, v in self.added.items()},
            "removed": {k: list(v) for k, v in self.removed.items()},
            "changed": {k: dict(v) for k, v in self.changed.items()},
        }


def diff_manifests(old: Mapping[str, Any], new: Mapping[str, Any]) -> ManifestDiff:
    """Compare two (normalised) manifests field by field."""
    added: dict[str, list[Any]] = {}
    removed: dict[str, list[Any]] = {}
    changed: dict[str, dict[str, Any]] = {}
    for field in LIST_FIELDS:
        before, after = _items(old, field), _items(new, field)
        if plus := [v for v in after if v not in before]:
            added[field] = plus
        if minus := [v for v in before if v not in after]:
            removed[field] = minus
    old_ep, new_ep = _get(old, "endpoints"), _get(new, "endpoints")
    old_ep = old_ep if isinstance(old_ep, Mapping) else {}
    new_ep = new_ep if isinstance(new_ep, Mapping) else {}
    if plus := sorted(str(k) for k in new_ep if k not in old_ep):
        added["endpoints"] = plus
    if minus := sorted(str(k) for k in old_ep if k not in new_ep):
        removed["endpoints"] = minus
    for name in sorted(str(k) for k in new_ep if k in old_ep and old_ep[k] != new_ep[k]):
        changed[f"endpoints.{name}"] = {"old": old_ep[name], "new": new_ep[name]}
    if _audit_rank(old) != _audit_rank(new):  # a missing level counts as "none"
        changed["compliance.audit_level"] = {
            "old": AUDIT_ORDER[_audit_rank(old)],
            "new": AUDIT_ORDER[_audit_rank(new)],
        }
    for field in SCALAR_FIELDS:
        if field == "compliance.audit_level":
            continue
        before, after = _get(old, field), _get(new, field)
        if before != after:
            changed[field] = {"old": before, "new": after}
    return ManifestDiff(added, removed, changed)


@dataclass(frozen=True)
class Risk:
    """A plugin's risk from what it declares: `level` low|medium|high|critical."""

    level: str
    score: int
    factors: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "score": self.score, "factors": list(self.factors)}


def risk_rating(manifest: Mapping[str, Any]) -> Risk:
    """Score: PHI 40, PII 25, external egress 20 (+1 per domain, up to +10), confidential 10,
    5 per dependency (up to 15), no audit 10. Levels: <20 low, <45 medium, <70 high."""
    if not isinstance(manifest, Mapping):
        manifest = {}
    traits = set(_items(manifest, "traits"))
    classes = set(_items(manifest, "security.data_classification"))
    domains = _items(manifest, "allowed_domains")
    deps = _items(manifest, "dependencies")
    score = 0
    factors: list[str] = []
    if "handles_phi" in traits or "phi" in classes:
        score += 40
        factors.append("phi")
    if "handles_pii" in traits or "pii" in classes:
        score += 25
        factors.append("pii")
    if "external_service" in traits or domains:
        score += 20 + min(len(domains), 10)
        factors.append(f"external_egress:{len(domains)}")
    if "confidential" in classes:
        score += 10
        factors.append("confidential")
    if deps:
        score += min(5 * len(deps), 15)
        factors.append(f"dependencies:{len(deps)}")
    if _audit_rank(manifest) == 0:
        score += 10
        factors.append("no_audit")
    level = (
        "low" if score < 20 else "medium" if score < 45 else "high" if score < 70 else "critical"
    )
    return Risk(level, score, tuple(factors))


def needs_approval(manifest: Mapping[str, Any]) -> bool:
    """Whether registering this manifest waits for an admin (anything beyond low-risk)."""
    if not isinstance(manifest, Mapping):
        return True
    traits = set(_items(manifest, "traits"))
    classes = set(_items(manifest, "security.data_classification"))
    return bool(
        traits & SENSITIVE_TRAITS
        or not classes <= LOW_CLASSIFICATIONS
        or _items(manifest, "allowed_domains")
    )
