"""The canonical event catalogue: types, versions, classifications and `data` JSON Schemas."""

from __future__ import annotations

import copy
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

CLASSIFICATIONS: tuple[str, ...] = ("public", "internal", "confidential", "pii", "phi")


@dataclass(frozen=True)
class EventType:
    """One canonical event type; `schema` describes the event's `data`."""

    type: str
    version: str
    classification: str
    schema: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "version": self.version,
            "classification": self.classification,
            "schema": copy.deepcopy(self.schema),
        }


def _object(title: str, properties: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    return {
        "$schema": SCHEMA_DIALECT,
        "title": title,
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": True,
    }


_ID = {"type": "string", "minLength": 1, "maxLength": 200}
_TIME = {"type": "string", "format": "date-time"}
_USER_PROPS: dict[str, Any] = {
    "user_id": _ID,
    "username": {"type": "string", "minLength": 1, "maxLength": 200},
    "email": {"type": "string", "format": "email"},
    "display_name": {"type": "string", "maxLength": 200},
    "roles": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    "attributes": {"type": "object"},
}

CATALOGUE: tuple[EventType, ...] = (
    EventType(
        "UserCreated",
        "1.0",
        "pii",
        _object("UserCreated", {**_USER_PROPS, "created_at": _TIME}, ("user_id", "username")),
    ),
    EventType(
        "UserUpdated",
        "1.0",
        "pii",
        _object(
            "UserUpdated",
            {
                **_USER_PROPS,
                "changed": {"type": "array", "items": {"type": "string"}},
                "updated_at": _TIME,
            },
            ("user_id",),
        ),
    ),
    EventType(
        "UserDeleted",
        "1.0",
        "pii",
        _object("UserDeleted", {"user_id": _ID, "deleted_at": _TIME}, ("user_id",)),
    ),
    EventType(
        "PluginRegistered",
        "1.0",
        "internal",
        _object(
            "PluginRegistered",
            {"plugin_id": _ID, "version": {"type": "string"}, "status": {"type": "string"}},
            ("plugin_id",),
        ),
    ),
    EventType(
        "PluginStatusChanged",
        "1.0",
        "internal",
        _object(
            "PluginStatusChanged",
            {
                "plugin_id": _ID,
                "from": {"type": "string"},
                "to": {"type": "string"},
                "reason": {"type": "string"},
            },
            ("plugin_id", "to"),
        ),
    ),
    EventType(
        "AuditAlert",
        "1.0",
        "internal",
        _object(
            "AuditAlert",
            {
                "severity": {"enum": ["info", "warning", "critical"]},
                "message": {"type": "string"},
                "actor": {"type": "string"},
                "target": {"type": "string"},
            },
            ("severity", "message"),
        ),
    ),
)

_BY_NAME = {e.type: e for e in CATALOGUE}


def event_type(name: object) -> EventType | None:
    """The catalogue entry for `name`, or None for an unknown (or non-string) name."""
    return _BY_NAME.get(name) if isinstance(name, str) else None


def catalogue_json() -> dict[str, Any]:
    """The body of `GET /events/types`."""
    return {"types": [e.to_dict() for e in CATALOGUE]}


def can_receive(traits: Collection[str], classification: str) -> bool:
    """Whether a plugin with `traits` may receive data of `classification`."""
    have = set(traits)
    if classification == "phi":
        return "handles_phi" in have
    if classification == "pii":
        return bool(have & {"handles_pii", "handles_phi"})
    if classification == "confidential":
        return bool(have & {"handles_pii", "handles_phi", "audit_required"})
    return classification in {"public", "internal"}
