"""Manifests for tests: the seed's example and small variations."""

from __future__ import annotations

import copy
from typing import Any

SEED_USER_MANAGEMENT: dict[str, Any] = {
    "id": "user-management",
    "name": "User Management Plugin",
    "version": "1.0.0",
    "description": "Manages user profiles and extended attributes",
    "contracts": ["IdentityPlugin"],
    "traits": ["handles_pii", "audit_required"],
    "dependencies": [],
    "allowed_domains": [],
    "endpoints": {"health": "/health", "user_info": "/api/users/{id}"},
    "security": {"authentication_required": True, "data_classification": ["pii", "internal"]},
    "compliance": {"hipaa_controls": ["164.312(a)", "164.312(d)"], "audit_level": "detailed"},
}


def simple(plugin_id: str, **changes: Any) -> dict[str, Any]:
    """A low-risk manifest that auto-approves (public/internal data, no egress)."""
    m: dict[str, Any] = {
        "id": plugin_id,
        "name": f"Plugin {plugin_id}",
        "version": "1.0.0",
        "description": "test plugin",
        "contracts": ["ReportPlugin"],
        "traits": ["audit_required"],
        "dependencies": [],
        "allowed_domains": [],
        "endpoints": {"health": "/health", "items": "/api/items/{id}"},
        "security": {"authentication_required": True, "data_classification": ["internal"]},
        "compliance": {"hipaa_controls": [], "audit_level": "basic"},
    }
    m.update(changes)
    return m


def seed(**changes: Any) -> dict[str, Any]:
    m = copy.deepcopy(SEED_USER_MANAGEMENT)
    m.update(changes)
    return m
