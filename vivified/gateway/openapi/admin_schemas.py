"""Component schemas of the admin API's bodies (see `admin` for its operations)."""

from __future__ import annotations

from vivified.gateway.openapi.components import (
    BOOLEAN,
    INTEGER,
    NULLABLE_TIMESTAMP,
    NUMBER,
    OBJECT,
    STRING,
    STRINGS,
    TIMESTAMP,
    Schema,
    nullable,
    obj,
)

COMMENT: Schema = {"type": "string", "description": "kept with the revision (≤ 500 chars)"}

SCHEMAS: dict[str, Schema] = {
    "RegistrationToken": obj(
        {
            "id": STRING,
            "plugin_id": nullable(STRING),
            "uses_left": INTEGER,
            "expires_at": TIMESTAMP,
            "revoked": BOOLEAN,
            "created_by": STRING,
            "created_at": TIMESTAMP,
        },
        "id",
        "plugin_id",
        "uses_left",
        "expires_at",
        "revoked",
    ),
    "AuditRecord": obj(
        {
            "id": INTEGER,
            "time": STRING,
            "actor": STRING,
            "lane": STRING,
            "action": STRING,
            "target": STRING,
            "decision": STRING,
            "reason": STRING,
            "request_id": STRING,
            "status": INTEGER,
            "latency_ms": nullable(NUMBER),
            "detail": nullable(OBJECT),
            "prev_hash": STRING,
            "hash": STRING,
        },
        "id",
        "time",
        "actor",
        "lane",
        "action",
        "target",
        "decision",
    ),
    "Grant": obj(
        {
            "id": STRING,
            "caller": STRING,
            "target": STRING,
            "methods": STRINGS,
            "paths": STRINGS,
            "created_by": STRING,
            "created_at": TIMESTAMP,
        },
        "id",
        "caller",
        "target",
        "methods",
        "paths",
    ),
    "Egress": obj(
        {
            "enabled": BOOLEAN,
            "blocked_domains": STRINGS,
            "allowed_networks": STRINGS,
            "host_overrides": OBJECT,
            "allowed_ports": {"type": "array", "items": INTEGER},
            "passthrough_domains": STRINGS,
            "response_filters": OBJECT,
            "version": INTEGER,
            "comment": COMMENT,
        }
    ),
    "Allowlist": obj(
        {
            "domains": STRINGS,
            "mode": {"type": "string", "enum": ["enforce", "report"]},
            "requested": STRINGS,
            "version": INTEGER,
            "comment": COMMENT,
        }
    ),
    "Limits": obj(
        {
            "rate": nullable(NUMBER),
            "concurrency": nullable(INTEGER),
            "effective": obj({"rate": NUMBER, "concurrency": INTEGER}),
            "version": INTEGER,
            "comment": COMMENT,
        }
    ),
    "Revision": obj(
        {
            "id": INTEGER,
            "time": TIMESTAMP,
            "actor": STRING,
            "object": STRING,
            "before": nullable(OBJECT),
            "after": nullable(OBJECT),
            "diff": nullable(OBJECT),
            "comment": STRING,
        },
        "id",
        "time",
        "actor",
        "object",
    ),
    "AdminUser": obj(
        {
            "id": STRING,
            "name": STRING,
            "scopes": STRINGS,
            "disabled": BOOLEAN,
            "created_at": TIMESTAMP,
        },
        "id",
        "name",
        "scopes",
    ),
    "AdminToken": obj(
        {
            "id": STRING,
            "name": STRING,
            "scopes": STRINGS,
            "created_at": TIMESTAMP,
            "expires_at": NULLABLE_TIMESTAMP,
            "revoked": BOOLEAN,
        },
        "id",
        "scopes",
    ),
    "IssuedAdminToken": obj(
        {"id": STRING, "token": STRING, "scopes": STRINGS, "expires_at": NULLABLE_TIMESTAMP},
        "id",
        "token",
        "scopes",
        "expires_at",
    ),
    "SigningKey": obj(
        {
            "kid": STRING,
            "created_at": TIMESTAMP,
            "retired_at": NULLABLE_TIMESTAMP,
            "publish_until": NULLABLE_TIMESTAMP,
            "current": BOOLEAN,
        },
        "kid",
        "current",
    ),
    "OidcUser": obj({"id": STRING, "name": STRING, "disabled": BOOLEAN}, "id", "name"),
    "DeadLetter": obj({"seq": INTEGER, "subscriber": STRING, "event": OBJECT}, "seq"),
    "SubscriberLag": obj({"subscriber": STRING}, "subscriber"),
}
