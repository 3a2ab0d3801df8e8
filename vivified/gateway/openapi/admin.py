"""Operations of the admin API (`/admin/...`): an admin token with the scope each names."""

from __future__ import annotations

from vivified.gateway.openapi.admin_schemas import COMMENT
from vivified.gateway.openapi.components import (
    BOOLEAN,
    ETAG,
    IF_MATCH,
    INTEGER,
    NUMBER,
    OBJECT,
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

MERGE_PATCH = "application/merge-patch+json"


_TAG = ("admin",)

OPERATIONS: dict[tuple[str, str], Schema] = {
    ("post", "/admin/registration-tokens"): op(
        "Issue a registration token, optionally bound to one plugin id (plugins:manage)",
        status=201,
        ok=obj(
            {
                "id": STRING,
                "token": STRING,
                "expires_at": TIMESTAMP,
                "uses": INTEGER,
                "plugin_id": nullable(STRING),
            },
            "id",
            "token",
            "expires_at",
            "uses",
            "plugin_id",
        ),
        body=json_body(
            obj(
                {
                    "plugin_id": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"},
                    "uses": {"type": "integer", "minimum": 1},
                    "ttl_seconds": {"type": "integer", "minimum": 60},
                },
                closed=True,
            ),
            required=False,
        ),
        tags=_TAG,
    ),
    ("get", "/admin/registration-tokens"): op(
        "Registration tokens' metadata, never the tokens (plugins:manage)",
        ok=items_of(ref("RegistrationToken")),
        tags=_TAG,
    ),
    ("delete", "/admin/registration-tokens/{token_id}"): op(
        "Revoke a registration token (plugins:manage)", status=204, tags=_TAG
    ),
    ("get", "/admin/audit"): op(
        "Query the audit trail, newest first, with filters and a paging cursor (audit:read)",
        ok=obj(
            {
                "items": {"type": "array", "items": ref("AuditRecord")},
                "next_cursor": nullable(STRING),
            },
            "items",
            "next_cursor",
        ),
        parameters=[
            query("actor", STRING),
            query("target", STRING),
            query(
                "lane",
                {
                    "type": "string",
                    "enum": ["admin", "egress", "events", "health", "operator", "registry"],
                },
            ),
            query("action", STRING),
            query("decision", {"type": "string", "enum": ["allow", "deny", "report"]}),
            query("since", STRING, "ISO 8601 time"),
            query("until", STRING, "ISO 8601 time"),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
            query("cursor", STRING, "a next_cursor value from a response"),
        ],
        tags=_TAG,
    ),
    ("get", "/admin/audit/verify"): op(
        "Verify the audit hash chain end to end (audit:read)",
        ok=obj(
            {
                "ok": BOOLEAN,
                "checked": INTEGER,
                "first_bad_id": nullable(INTEGER),
                "problem": nullable(STRING),
                "seconds": NUMBER,
            },
            "ok",
            "checked",
            "first_bad_id",
            "problem",
        ),
        tags=_TAG,
    ),
    ("post", "/admin/grants"): op(
        "Let one plugin call another's paths on the operator lane (grants:manage)",
        status=201,
        ok=ref("Grant"),
        body=json_body(
            obj(
                {
                    "caller": STRING,
                    "target": STRING,
                    "methods": {"type": "array", "items": STRING, "maxItems": 64},
                    "paths": {"type": "array", "items": STRING, "maxItems": 64},
                },
                "caller",
                "target",
                closed=True,
            )
        ),
        tags=_TAG,
    ),
    ("get", "/admin/grants"): op(
        "Grants, optionally of one caller or target (grants:manage)",
        ok=items_of(ref("Grant")),
        parameters=[query("caller", STRING), query("target", STRING)],
        tags=_TAG,
    ),
    ("delete", "/admin/grants/{grant_id}"): op(
        "Remove a grant (grants:manage)", status=204, tags=_TAG
    ),
    ("put", "/admin/contracts/{contract}"): op(
        "Choose the plugin that serves a contract several declare (plugins:manage)",
        ok=obj({"contract": STRING, "plugin": STRING}, "contract", "plugin"),
        body=json_body(obj({"plugin": STRING}, "plugin", closed=True)),
        tags=_TAG,
    ),
    ("get", "/admin/policy/explain"): op(
        "What the operator lane would do for caller → target, and why (grants:manage)",
        ok=obj(
            {
                "caller": STRING,
                "target": STRING,
                "method": STRING,
                "path": STRING,
                "decision": {"type": "string", "enum": ["allow", "deny"]},
                "status": INTEGER,
                "reason": STRING,
                "detail": STRING,
                "route": {},
                "plugin": STRING,
                "circuit": {},
            },
            "caller",
            "target",
            "method",
            "path",
            "decision",
            "status",
            "reason",
        ),
        parameters=[
            query("caller", STRING, required=True),
            query("target", STRING, required=True),
            query("path", STRING, "the path on the target (under /api/)", required=True),
            query("method", STRING),
        ],
        tags=_TAG,
    ),
    ("get", "/admin/egress"): op(
        "The egress document, with its version (egress:manage)",
        ok=ref("Egress"),
        headers=ETAG,
        tags=_TAG,
    ),
    ("put", "/admin/egress"): op(
        "Replace the egress document (egress:manage)",
        ok=ref("Egress"),
        body=json_body(ref("Egress")),
        parameters=[IF_MATCH],
        headers=ETAG,
        tags=_TAG,
    ),
    ("patch", "/admin/egress"): op(
        "Change the egress document with a JSON Merge Patch (egress:manage)",
        ok=ref("Egress"),
        body=json_body(OBJECT, MERGE_PATCH),
        parameters=[IF_MATCH],
        headers=ETAG,
        tags=_TAG,
    ),
    ("get", "/admin/plugins/{plugin_id}/allowed-domains"): op(
        "A plugin's egress allowlist (egress:manage)",
        ok=ref("Allowlist"),
        headers=ETAG,
        tags=_TAG,
    ),
    ("put", "/admin/plugins/{plugin_id}/allowed-domains"): op(
        "Replace a plugin's egress allowlist (egress:manage)",
        ok=ref("Allowlist"),
        body=json_body(ref("Allowlist")),
        parameters=[IF_MATCH],
        headers=ETAG,
        tags=_TAG,
    ),
    ("patch", "/admin/plugins/{plugin_id}/allowed-domains"): op(
        "Change a plugin's egress allowlist with a JSON Merge Patch (egress:manage)",
        ok=ref("Allowlist"),
        body=json_body(OBJECT, MERGE_PATCH),
        parameters=[IF_MATCH],
        headers=ETAG,
        tags=_TAG,
    ),
    ("get", "/admin/config/revisions"): op(
        "Config revisions, newest first (egress:manage)",
        ok=items_of(ref("Revision")),
        parameters=[
            query("object", STRING),
            query("limit", {"type": "integer", "minimum": 1}),
            query("before", {"type": "integer", "minimum": 1}),
        ],
        tags=_TAG,
    ),
    ("get", "/admin/config/revisions/{rev}"): op(
        "One config revision (egress:manage)", ok=ref("Revision"), tags=_TAG
    ),
    ("post", "/admin/config/revisions/{rev}/revert"): op(
        "Restore what a revision replaced, as a new revision (egress:manage)",
        ok=obj({"object": STRING, "version": INTEGER, "value": OBJECT}, "object", "version"),
        body=json_body(obj({"comment": COMMENT}), required=False),
        tags=_TAG,
    ),
    ("get", "/admin/plugins/{plugin_id}/limits"): op(
        "A plugin's rate and concurrency limits override (plugins:manage)",
        ok=ref("Limits"),
        headers=ETAG,
        tags=_TAG,
    ),
    ("put", "/admin/plugins/{plugin_id}/limits"): op(
        "Replace a plugin's rate and concurrency limits override (plugins:manage)",
        ok=ref("Limits"),
        body=json_body(ref("Limits")),
        parameters=[IF_MATCH],
        headers=ETAG,
        tags=_TAG,
    ),
    ("post", "/admin/users"): op(
        "Create an admin user with scopes (admins:manage)",
        status=201,
        ok=ref("AdminUser"),
        body=json_body(obj({"name": STRING, "scopes": STRINGS}, "name", closed=True)),
        tags=_TAG,
    ),
    ("get", "/admin/users"): op(
        "Admin users (admins:manage)", ok=items_of(ref("AdminUser")), tags=_TAG
    ),
    ("post", "/admin/users/{user_id}/tokens"): op(
        "Mint an API token for a user (`me`: the caller), within the caller's scopes",
        status=201,
        ok=ref("IssuedAdminToken"),
        body=json_body(
            obj(
                {
                    "name": {"type": "string", "maxLength": 100},
                    "scopes": STRINGS,
                    "ttl_seconds": {"type": "integer", "minimum": 60},
                },
                closed=True,
            ),
            required=False,
        ),
        tags=_TAG,
    ),
    ("get", "/admin/users/{user_id}/tokens"): op(
        "A user's API tokens, never their text (`me`: the caller)",
        ok=items_of(ref("AdminToken")),
        tags=_TAG,
    ),
    ("delete", "/admin/tokens/{token_id}"): op("Revoke an admin API token", status=204, tags=_TAG),
    ("get", "/admin/keys"): op(
        "The signing keys' public facts, newest first (keys:manage)",
        ok=items_of(ref("SigningKey")),
        tags=_TAG,
    ),
    ("post", "/admin/keys/rotate"): op(
        "Rotate the signing key (keys:manage)", ok=obj({"kid": STRING}, "kid"), tags=_TAG
    ),
    ("post", "/admin/egress/ca/rotate"): op(
        "Rotate the egress CA; old and new are served during the overlap (egress:manage)",
        ok=obj({"id": STRING, "name": STRING, "previous": nullable(STRING)}, "id", "name"),
        tags=_TAG,
    ),
    ("get", "/admin/oidc/users"): op(
        "Admins who signed in with the OIDC provider (admins:manage)",
        ok=items_of(ref("OidcUser")),
        tags=_TAG,
    ),
    ("post", "/admin/oidc/users/{user_id}/disable"): op(
        "Refuse this OIDC user in core whatever the provider says (admins:manage)",
        ok=ref("OidcUser"),
        tags=_TAG,
    ),
    ("post", "/admin/oidc/users/{user_id}/enable"): op(
        "Accept this OIDC user again (admins:manage)", ok=ref("OidcUser"), tags=_TAG
    ),
    ("get", "/admin/events/dead-letters"): op(
        "Events no subscriber accepted after every retry (plugins:manage)",
        ok=items_of(ref("DeadLetter")),
        tags=_TAG,
    ),
    ("post", "/admin/events/dead-letters/{seq}/replay"): op(
        "Deliver a dead letter again (plugins:manage)",
        ok=obj({"seq": INTEGER, "delivered": BOOLEAN, "status": INTEGER}, "seq", "delivered"),
        tags=_TAG,
    ),
    ("delete", "/admin/events/dead-letters/{seq}"): op(
        "Drop a dead letter for good (plugins:manage)", status=204, tags=_TAG
    ),
    ("get", "/admin/events/subscribers"): op(
        "Each subscriber's delivery lag (plugins:manage)",
        ok=items_of(ref("SubscriberLag")),
        tags=_TAG,
    ),
}
