"""The JSON Schema (draft 2020-12) of a plugin manifest, served at
`GET /plugins/manifest.schema.json`. It states what a schema can; `validate_manifest` is the
authority (trait consistency, domain policy, reserved ids and event coverage are checked there).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from vivified.registry.event_catalogue import CATALOGUE
from vivified.registry.manifest.report import MAX_ITEMS
from vivified.registry.manifest.rules import (
    AUDIT_LEVELS,
    CLASSIFICATIONS,
    CONTRACT_RE,
    DESCRIPTION_MAX,
    DOCS_MAX,
    FORBIDDEN_TRAITS,
    HIPAA_RE,
    ID_MAX,
    ID_MIN,
    NAME_MAX,
    PATH_MAX,
    SEMVER_RE,
    TRAIT_RE,
)

SCHEMA_ID = "https://vivified.dev/schemas/plugin-manifest.schema.json"
_EXTENSIONS: dict[str, Any] = {"^x-": {}}
_PATH: dict[str, Any] = {
    "type": "string",
    "pattern": r"^/(?!.*\.\.)(?!.*://)[^\s\x00-\x1f\x7f]*$",
    "maxLength": PATH_MAX,
}


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _closed(
    properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "patternProperties": dict(_EXTENSIONS),
        "additionalProperties": False,
    }
    if required:
        out["required"] = list(required)
    return out | extra


def _unique(items: dict[str, Any], min_items: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "array",
        "items": items,
        "uniqueItems": True,
        "maxItems": MAX_ITEMS,
    }
    if min_items:
        out["minItems"] = min_items
    return out


@functools.cache
def _schema() -> dict[str, Any]:
    plugin_id = {
        "type": "string",
        "pattern": r"^[a-z0-9]+(-[a-z0-9]+)*$",
        "minLength": ID_MIN,
        "maxLength": ID_MAX,
    }
    events = {"enum": [e.type for e in CATALOGUE]}
    return _closed(
        {
            "id": plugin_id,
            "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX},
            "version": {"type": "string", "pattern": _anchored(SEMVER_RE.pattern)},
            "description": {"type": "string", "maxLength": DESCRIPTION_MAX},
            "contracts": _unique({"type": "string", "pattern": _anchored(CONTRACT_RE.pattern)}, 1),
            "traits": _unique(
                {
                    "type": "string",
                    "pattern": _anchored(TRAIT_RE.pattern),
                    "not": {"enum": sorted(FORBIDDEN_TRAITS)},
                },
                1,
            ),
            "dependencies": _unique(plugin_id),
            "allowed_domains": _unique({"type": "string", "minLength": 1, "maxLength": 255}),
            "endpoints": {
                "type": "object",
                "propertyNames": {"pattern": _anchored(TRAIT_RE.pattern), "maxLength": 64},
                "additionalProperties": _PATH,
            },
            "security": _closed(
                {
                    "authentication_required": {"const": True},
                    "data_classification": _unique({"enum": list(CLASSIFICATIONS)}, 1),
                },
                ("authentication_required", "data_classification"),
            ),
            "compliance": _closed(
                {
                    "hipaa_controls": _unique(
                        {"type": "string", "pattern": _anchored(HIPAA_RE.pattern)}
                    ),
                    "audit_level": {"enum": list(AUDIT_LEVELS)},
                    "data_retention_days": {"type": "integer", "minimum": 1},
                }
            ),
            "health_check": _closed(
                {
                    "type": {"const": "http"},
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "path": _PATH,
                },
                ("type", "port"),
            ),
            "resources": _closed(
                {
                    "memory_limit": {"type": "integer", "minimum": 64, "maximum": 8192},
                    "cpu_limit": {"type": "number", "minimum": 0.1, "maximum": 8.0},
                }
            ),
            "base_url": {"type": "string", "format": "uri", "pattern": r"^https?://[^@?#\s]+$"},
            "events": _closed({"publishes": _unique(events), "subscribes": _unique(events)}),
            "docs": {
                "type": "string",
                "pattern": r"^/(?!/)(?!.*(?:\\|\.\.|%2[eEfF]|%5[cC]|://|#))[^\s\x00-\x1f\x7f]*$",
                "maxLength": DOCS_MAX,
            },
        },
        ("id", "name", "version", "contracts", "traits", "security"),
        **{
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_ID,
            "title": "Vivified plugin manifest",
        },
    )


def manifest_json_schema() -> dict[str, Any]:
    """A fresh copy of the manifest's JSON Schema."""
    return copy.deepcopy(_schema())
