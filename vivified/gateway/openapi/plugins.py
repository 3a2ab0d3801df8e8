"""Operations of the plugin, event and meta routes: registration and lifecycle, heartbeats,
the event lane, and core's own liveness, keys and descriptions."""

from __future__ import annotations

from vivified.gateway.openapi.components import (
    INTEGER,
    NULLABLE_TIMESTAMP,
    NUMBER,
    OBJECT,
    PUBLIC,
    STRING,
    STRINGS,
    TIMESTAMP,
    Schema,
    items_of,
    json_body,
    nullable,
    obj,
    op,
    query,
    ref,
)

RISK: Schema = obj(
    {
        "level": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
        "score": NUMBER,
        "factors": STRINGS,
    },
    "level",
    "score",
    "factors",
)
HEALTH_STATE: Schema = obj(
    {"state": STRING, "last_check": NULLABLE_TIMESTAMP, "consecutive_failures": INTEGER},
    "state",
    "last_check",
    "consecutive_failures",
)

SCHEMAS: dict[str, Schema] = {
    "Risk": RISK,
    "Plugin": obj(
        {
            "id": STRING,
            "name": STRING,
            "version": STRING,
            "status": STRING,
            "base_url": nullable(STRING),
            "health": HEALTH_STATE,
            "risk": ref("Risk"),
            "pending": nullable(OBJECT),
            "egress": obj({"domains": STRINGS, "mode": STRING}, "domains", "mode"),
            "manifest": nullable(OBJECT),
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
        "id",
        "name",
        "version",
        "status",
        "health",
        "risk",
        "egress",
    ),
    "Registered": obj(
        {
            "id": STRING,
            "status": STRING,
            "token": STRING,
            "expires_at": TIMESTAMP,
            "risk": ref("Risk"),
            "warnings": {"type": "array"},
            "diff": OBJECT,
        },
        "id",
        "status",
        "token",
        "expires_at",
        "risk",
        "warnings",
    ),
    "PluginToken": obj({"token": STRING, "expires_at": TIMESTAMP}, "token", "expires_at"),
    "Health": obj(
        {
            "state": STRING,
            "last_check": NULLABLE_TIMESTAMP,
            "consecutive_failures": INTEGER,
            "last_heartbeat": NULLABLE_TIMESTAMP,
            "history": {"type": "array"},
            "metrics": OBJECT,
        },
        "state",
        "last_check",
        "consecutive_failures",
        "last_heartbeat",
        "history",
        "metrics",
    ),
    "EventType": obj(
        {"type": STRING, "version": STRING, "classification": STRING, "schema": OBJECT},
        "type",
        "version",
        "classification",
        "schema",
    ),
    "Readiness": obj(
        {
            "status": {"type": "string", "enum": ["ready", "degraded", "not_ready"]},
            "checks": {"type": "object", "additionalProperties": STRING},
            "quarantined": nullable(INTEGER),
        },
        "status",
        "checks",
        "quarantined",
    ),
}

_PLUGIN = ("plugins",)
_EVENTS = ("events",)
_META = ("meta",)

REGISTER = op(
    "Register a plugin (201) or re-register it (200); answers its token once "
    "(a registration token, or the plugin's own token to re-register)",
    status=201,
    ok=ref("Registered"),
    body=json_body(ref("Manifest")),
    tags=_PLUGIN,
)
REGISTER["responses"]["200"] = {
    "description": "re-registered",
    "content": {"application/json": {"schema": ref("Registered")}},
}

OPERATIONS: dict[tuple[str, str], Schema] = {
    ("post", "/plugins/register"): REGISTER,
    ("get", "/plugins/manifest.schema.json"): op(
        "The JSON Schema of the plugin manifest",
        ok=OBJECT,
        media_type="application/schema+json",
        security=PUBLIC,
        tags=_PLUGIN,
    ),
    ("get", "/plugins"): op(
        "Every plugin with its status, health and risk rating (plugins:manage)",
        ok=items_of(ref("Plugin")),
        parameters=[query("status", {"type": "string", "maxLength": 32})],
        tags=_PLUGIN,
    ),
    ("get", "/plugins/{plugin_id}"): op(
        "One plugin's record (an admin, or the plugin itself)", ok=ref("Plugin"), tags=_PLUGIN
    ),
    ("delete", "/plugins/{plugin_id}"): op(
        "Remove a plugin (an admin, or the plugin itself)", status=204, tags=_PLUGIN
    ),
    ("post", "/plugins/{plugin_id}/enable"): op(
        "Approve or re-enable a plugin after validating its manifest again (plugins:manage)",
        ok=ref("Plugin"),
        tags=_PLUGIN,
    ),
    ("post", "/plugins/{plugin_id}/disable"): op(
        "Quarantine a plugin: lanes refuse it and its tokens stop working (plugins:manage)",
        ok=ref("Plugin"),
        tags=_PLUGIN,
    ),
    ("post", "/plugins/{plugin_id}/token"): op(
        "Swap the plugin's valid token for a fresh one (the plugin's token)",
        ok=ref("PluginToken"),
        tags=_PLUGIN,
    ),
    ("post", "/plugins/{plugin_id}/heartbeat"): op(
        "A plugin reports that it is alive (the plugin's token, for itself only)",
        ok=obj({"state": STRING, "last_heartbeat": TIMESTAMP}, "state", "last_heartbeat"),
        body=json_body(obj({"status": STRING, "metrics": OBJECT}), required=False),
        tags=_PLUGIN,
    ),
    ("get", "/plugins/{plugin_id}/health"): op(
        "State, last check, consecutive failures, recent history and metrics "
        "(an admin, or the plugin itself)",
        ok=ref("Health"),
        tags=_PLUGIN,
    ),
    ("get", "/events/types"): op(
        "The event catalogue: every type with its classification and data schema",
        ok=obj({"types": {"type": "array", "items": ref("EventType")}}, "types"),
        security=PUBLIC,
        tags=_EVENTS,
    ),
    ("post", "/events"): op(
        "Publish an event of a type the plugin declares (the plugin's token)",
        status=202,
        ok=obj({"id": STRING}, "id"),
        body=json_body(
            obj(
                {
                    "type": STRING,
                    "data": {},
                    "id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
                    "subject": {"type": "string", "maxLength": 256},
                },
                "type",
                "data",
                closed=True,
            )
        ),
        tags=_EVENTS,
    ),
    ("get", "/healthz"): op(
        "Liveness: 200 once the gateway serves",
        ok=obj({"status": {"const": "ok"}}, "status"),
        security=PUBLIC,
        tags=_META,
    ),
    ("get", "/readyz"): op(
        "Readiness: the database answers and the audit writer is committing",
        ok=ref("Readiness"),
        security=PUBLIC,
        tags=_META,
    ),
    ("get", "/.well-known/jwks.json"): op(
        "Core's public signing keys (JWK Set)",
        ok=obj(
            {
                "keys": {
                    "type": "array",
                    "items": obj(
                        {"kty": STRING, "crv": STRING, "alg": STRING, "kid": STRING, "x": STRING},
                        "kty",
                        "kid",
                    ),
                }
            },
            "keys",
        ),
        security=PUBLIC,
        tags=_META,
    ),
    ("get", "/egress/ca.pem"): op(
        "The public CA certificate(s) plugins trust for the intercepting egress proxy",
        ok=STRING,
        media_type="application/x-pem-file",
        security=PUBLIC,
        tags=_META,
    ),
    ("get", "/openapi.json"): op(
        "This API's OpenAPI description", ok=OBJECT, security=PUBLIC, tags=_META
    ),
    ("get", "/metrics"): op(
        "Prometheus metrics (an admin token with metrics:read)",
        ok=STRING,
        media_type="text/plain",
        tags=_META,
    ),
}
# The not-ready answer of /readyz is the same document with 503, not problem+json.
OPERATIONS[("get", "/readyz")]["responses"]["503"] = {
    "description": "not ready",
    "content": {"application/json": {"schema": ref("Readiness")}},
}
