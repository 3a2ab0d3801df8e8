"""Registering an id again: who may (ownership, DESIGN.md "Lifecycle") and what a
re-registration changes (a widening change waits for an admin's approval)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from vivified.registry.errors import DomainError
from vivified.registry.manifest.diff import diff_manifests, needs_approval
from vivified.registry.plugins.record import approved_manifest
from vivified.registry.store.tables import Plugin


class RegistryError(DomainError):
    """A registry operation was refused; the gateway maps its code to problem+json."""


@dataclass(frozen=True)
class Credential:
    """Who is registering: an admin-issued registration token, the plugin itself, or nobody."""

    kind: Literal["registration_token", "plugin_token", "open"]
    subject: str  # for the audit trail: token id, plugin id or "anonymous"
    plugin_id: str | None = None  # bound plugin id (registration token) or token subject
    token_id: str | None = None


def _check_binding(pid: str, cred: Credential) -> None:
    """A registration token bound to another id is refused, whether `pid` is new or known."""
    if cred.kind == "registration_token" and cred.plugin_id not in (None, pid):
        raise RegistryError(
            "registration_token_bound",
            f"this registration token is bound to {cred.plugin_id!r}",
        )


def check_new(pid: str, cred: Credential) -> None:
    """A new id: any registration token not bound to another id, or open registration."""
    if cred.kind == "plugin_token":
        raise RegistryError(
            "token_for_other_plugin", "a plugin token can only re-register its own plugin"
        )
    _check_binding(pid, cred)


def check_existing(pid: str, cred: Credential) -> None:
    """A known id: only the plugin's own token or a registration token bound to this id."""
    _check_binding(pid, cred)
    own = cred.plugin_id == pid and cred.kind in {"plugin_token", "registration_token"}
    if not own:
        raise RegistryError(
            "plugin_id_taken",
            f"plugin id {pid!r} belongs to another owner; re-register with the plugin's own "
            "token or a registration token bound to this id",
        )


def apply_reregistration(
    row: Plugin, manifest: dict[str, Any], now: float
) -> dict[str, Any] | None:
    """Update a known plugin; a widening change waits for approval. Returns the diff."""
    approved = approved_manifest(row)
    old_domains = set(row.manifest.get("allowed_domains", []))
    row.gen += 1  # re-registration revokes every older token at once
    row.manifest = manifest
    row.name, row.version = manifest["name"], manifest["version"]
    row.base_url = manifest["base_url"]
    row.updated_at = now
    if approved is None:  # never approved: the auto-approval rule decides again
        row.status = "registered" if needs_approval(manifest) else "active"
        if row.status == "active":
            row.egress_domains = list(manifest.get("allowed_domains", []))
        return None
    diff = diff_manifests(approved, manifest)
    if diff.widened:
        row.pending = {"approved": dict(approved), "diff": diff.to_dict()}
        if row.status == "active":
            row.status = "registered"
        return diff.to_dict()
    if row.pending:  # back within what was approved: the pending approval is moot
        row.pending = None
        if row.status == "registered":
            row.status = "active"
    dropped = old_domains - set(manifest.get("allowed_domains", []))
    row.egress_domains = [d for d in row.egress_domains if d not in dropped]
    return diff.to_dict()
