"""Plugin manifest validation (DESIGN.md "The manifest"): every problem at once, with paths.

`validate_manifest` is pure and never raises; field checkers live in `manifest_rules`."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from vivified.registry.event_catalogue import can_receive
from vivified.registry.manifest.report import (
    Problem,
    Report,
    is_int,
    obj,
    pointer,
    show,
    string_list,
)
from vivified.registry.manifest.rules import (
    AUDIT_LEVELS,
    CONTRACT_RE,
    FORBIDDEN_TRAITS,
    REQUIRED_FIELDS,
    RESERVED_IDS,
    TOP_LEVEL_FIELDS,
    TRAIT_RE,
    check_base_url,
    check_description,
    check_docs,
    check_domains,
    check_endpoints,
    check_id,
    check_name,
    check_plugin_id,
    check_version,
)
from vivified.registry.manifest.sections import (
    check_compliance,
    check_events,
    check_health_check,
    check_resources,
    check_security,
)

__all__ = [
    "RESERVED_IDS",
    "Problem",
    "ValidationResult",
    "contract_alias",
    "find_dependency_cycles",
    "validate_manifest",
]

DEFAULT_PORT = 8000


@dataclass(frozen=True)
class ValidationResult:
    """All errors and warnings; `manifest` is the normalised copy, or None when invalid."""

    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    manifest: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_manifest(
    data: object,
    *,
    blocklist: Collection[str] = (),
    phi_min_retention_days: int = 2190,
    known_plugins: Collection[str] | None = None,
) -> ValidationResult:
    """Validate a manifest against every rule; never raises, whatever `data` is."""
    r = Report()
    try:
        out = _validate(r, data, blocklist, phi_min_retention_days, known_plugins)
    except Exception as exc:  # a safety net: a validator bug must not become a 500
        r.error("", "invalid_manifest", f"the manifest could not be checked ({type(exc).__name__})")
        out = None
    errors = tuple(r.errors)
    return ValidationResult(errors, tuple(r.warnings), None if errors else out)


def _validate(
    r: Report,
    data: object,
    blocklist: Collection[str],
    min_retention: int,
    known: Collection[str] | None,
) -> dict[str, Any] | None:
    checked = obj(r, data, "", TOP_LEVEL_FIELDS, REQUIRED_FIELDS)
    if checked is None:
        return None
    f, extras = checked
    out: dict[str, Any] = {}
    pid = check_id(r, f["id"]) if "id" in f else None
    out["id"] = pid
    out["name"] = check_name(r, f["name"]) if "name" in f else None
    out["version"] = check_version(r, f["version"]) if "version" in f else None
    description = check_description(r, "description" in f, f.get("description"))
    if description is not None:
        out["description"] = description
    out["contracts"] = _contracts(r, f["contracts"]) if "contracts" in f else None
    traits = _traits(r, f["traits"]) if "traits" in f else None
    out["traits"] = traits
    out["dependencies"] = _dependencies(r, f.get("dependencies", []), pid, known)
    domains = check_domains(r, f.get("allowed_domains", []), blocklist)
    out["allowed_domains"] = domains
    endpoints = check_endpoints(r, f.get("endpoints", {}))
    out["endpoints"] = endpoints
    security = check_security(r, f["security"]) if "security" in f else None
    out["security"] = security
    if "compliance" in f and (compliance := check_compliance(r, f["compliance"])) is not None:
        out["compliance"] = compliance
    port = DEFAULT_PORT
    if "health_check" in f and (health := check_health_check(r, f["health_check"])) is not None:
        out["health_check"] = health
        port = health["port"]
    if "resources" in f and (resources := check_resources(r, f["resources"])) is not None:
        out["resources"] = resources
    out["base_url"] = check_base_url(r, f["base_url"]) if "base_url" in f else None
    if "base_url" not in f:
        out["base_url"] = f"http://{pid}:{port}"
    if "events" in f and (events := check_events(r, f["events"], traits or [])) is not None:
        out["events"] = events
        if events.get("subscribes") and endpoints is not None and "events" not in endpoints:
            r.error(
                "/endpoints/events",
                "missing_events_endpoint",
                "a subscriber must declare endpoints.events, the path core delivers events to",
            )
    if "docs" in f and (docs := check_docs(r, f["docs"])) is not None:
        out["docs"] = docs
    if traits is not None:
        classes = None if security is None else security.get("data_classification")
        _consistency(r, set(traits), classes, f.get("compliance", {}), domains, min_retention)
    out.update(extras)
    return out


def _contracts(r: Report, value: object) -> list[str] | None:
    hint = ": use a CamelCase role ending in 'Plugin', such as 'IdentityPlugin'"
    return string_list(
        r, value, "/contracts", what="contract", pattern=CONTRACT_RE, code="invalid_contract",
        hint=hint, min_items=1,
    )  # fmt: skip


def _traits(r: Report, value: object) -> list[str] | None:
    hint = ": use snake_case such as 'handles_pii'"
    traits = string_list(
        r, value, "/traits", what="trait", pattern=TRAIT_RE, code="invalid_trait",
        hint=hint, min_items=1,
    )  # fmt: skip
    if traits is None:
        return None
    for i, item in enumerate(value if isinstance(value, list) else []):
        if isinstance(item, str) and item in FORBIDDEN_TRAITS:  # a list item is unhashable
            r.error(
                pointer("traits", i),
                "forbidden_trait",
                f"the trait {item!r} is reserved and cannot be claimed; remove it",
            )
    return [t for t in traits if t not in FORBIDDEN_TRAITS]


def _dependencies(
    r: Report, value: object, pid: str | None, known: Collection[str] | None
) -> list[str] | None:
    deps = string_list(r, value, "/dependencies", what="dependency")
    if deps is None:
        return None
    out = []
    for i, dep in enumerate(value if isinstance(value, list) else []):
        if not isinstance(dep, str) or dep not in deps or dep in out:
            continue
        here = pointer("dependencies", i)
        why = check_plugin_id(dep)
        if why is not None:
            r.error(here, "invalid_dependency", f"{show(dep)} is not a plugin id: {why}")
        elif dep == pid:
            r.error(here, "self_dependency", "a plugin cannot depend on itself; remove it")
        else:
            out.append(dep)
            if known is not None and dep not in known:
                r.warn(here, "unknown_dependency", f"no plugin {dep!r} is registered yet")
    return out


def _consistency(
    r: Report,
    traits: set[str],
    classes: list[str] | None,
    compliance: object,
    domains: list[str] | None,
    min_retention: int,
) -> None:
    """Trait rules; a part that was itself invalid (already reported) is not judged again."""
    comp = compliance if isinstance(compliance, dict) else None
    level = None if comp is None else comp.get("audit_level", "none")
    rank = AUDIT_LEVELS.index(level) if level in AUDIT_LEVELS else None
    cls_path = "/security/data_classification"

    def need_level(trait: str, minimum: str) -> None:
        if rank is not None and rank < AUDIT_LEVELS.index(minimum):
            r.error(
                "/compliance/audit_level",
                "audit_level_too_low",
                f"the {trait} trait needs compliance.audit_level {minimum!r} or higher",
            )

    if "handles_phi" in traits:
        if classes is not None and "phi" not in classes:
            r.error(cls_path, "missing_classification", "handles_phi needs 'phi' listed here")
        if comp is not None and comp.get("hipaa_controls", []) == []:
            r.error(
                "/compliance/hipaa_controls",
                "missing_hipaa_controls",
                "handles_phi needs the HIPAA controls you implement, such as '164.312(a)'",
            )
        need_level("handles_phi", "detailed")
        days = None if comp is None else comp.get("data_retention_days")
        if is_int(days) and 1 <= days < min_retention:  # type: ignore[operator]
            r.error(
                "/compliance/data_retention_days",
                "retention_too_short",
                f"PHI must be kept at least {min_retention} days (policy minimum); "
                f"{show(days)} is too short",
            )
    if "handles_pii" in traits:
        if classes is not None and "pii" not in classes:
            r.error(cls_path, "missing_classification", "handles_pii needs 'pii' listed here")
        need_level("handles_pii", "basic")
    if "audit_required" in traits:
        need_level("audit_required", "basic")
    if "external_service" in traits and domains == []:
        r.error(
            "/allowed_domains",
            "missing_allowed_domains",
            "external_service needs the external host names it calls in allowed_domains",
        )
    for i, cls in enumerate(classes or []):
        if cls in {"pii", "phi"} and not can_receive(traits, cls):
            trait = "handles_phi" if cls == "phi" else "handles_pii (or handles_phi)"
            r.error(
                pointer("security", "data_classification", i),
                "classification_without_trait",
                f"data classified {cls!r} needs the trait {trait}; add it or drop {cls!r}",
            )


def contract_alias(contract: str) -> str:
    """`IdentityPlugin` → `identity`, `UserDirectoryPlugin` → `user-directory`."""
    base = contract.removesuffix("Plugin") or contract
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", base)
    words = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1-\2", words)
    return words.lower()


def find_dependency_cycles(graph: Mapping[str, Collection[str]]) -> list[list[str]]:
    """Every elementary cycle's nodes (one rotation each, starting at its smallest id), found
    through strongly connected components; self-loops count as cycles of one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    nodes = sorted(set(graph) | {d for deps in graph.values() for d in deps})

    def strongconnect(start: str) -> None:
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    cycles.append(sorted(component))

    for n in nodes:
        if n not in index:
            strongconnect(n)
    return sorted(cycles)
