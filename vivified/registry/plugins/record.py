"""The public view of a plugin record, and small facts about plugin rows and credentials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vivified.registry.manifest.diff import risk_rating
from vivified.registry.store.tables import Plugin

__all__ = ["approved_manifest", "looks_like_jwt", "plugin_record"]


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def approved_manifest(row: Plugin) -> Mapping[str, Any] | None:
    """The manifest an admin (or auto-approval) last accepted, if any."""
    if row.pending:
        approved = row.pending.get("approved")
        return approved if isinstance(approved, Mapping) else None
    return row.manifest if row.status in {"active", "disabled"} else None


def plugin_record(row: Plugin) -> dict[str, Any]:
    """The public view of a plugin (never a token)."""
    risk = risk_rating(row.manifest)
    return {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "status": row.status,
        "base_url": row.base_url_override or row.base_url,
        "health": {
            "state": row.health_state,
            "last_check": row.health_checked_at,
            "consecutive_failures": row.health_failures,
        },
        "risk": {"level": risk.level, "score": risk.score, "factors": list(risk.factors)},
        "pending": row.pending,
        "egress": {"domains": list(row.egress_domains), "mode": row.egress_mode},
        "manifest": row.manifest,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
