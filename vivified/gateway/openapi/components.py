"""Shared pieces of the OpenAPI description: components and the helpers operations use.

`ref("X")` points at `components.schemas.X`; `op(...)` builds one operation with its 2xx
answer and the problem+json answer (`default`, the shared `Problem` schema) every route
gives for a refusal or an error.
"""

from __future__ import annotations

from typing import Any

from vivified.config.problem_types import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from vivified.registry.manifest.schema import manifest_json_schema

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
OBJECT: Schema = {"type": "object"}
TIMESTAMP: Schema = {"type": "number", "description": "seconds since the epoch"}
NULLABLE_TIMESTAMP: Schema = {"type": ["number", "null"], "description": "seconds since the epoch"}
STRINGS: Schema = {"type": "array", "items": STRING}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """`schema` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], *required: str, closed: bool = False) -> Schema:
    """An object with these members (`required` named); `closed`: no others allowed."""
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


def items_of(schema: Schema) -> Schema:
    """`{items: [schema...]}`, the shape of every list core answers."""
    return obj({"items": {"type": "array", "items": schema}}, "items")


def json_body(
    schema: Schema, media_type: str = "application/json", required: bool = True
) -> Schema:
    return {"required": required, "content": {media_type: {"schema": schema}}}


def op(
    summary: str,
    *,
    ok: Schema | None = None,
    status: int = 200,
    media_type: str = "application/json",
    body: Schema | None = None,
    security: list[dict[str, list[str]]] | None = None,
    parameters: list[Schema] | None = None,
    headers: dict[str, Schema] | None = None,
    tags: tuple[str, ...] = (),
) -> Schema:
    """One operation: its success answer (`ok` under `media_type`, or none for a 204) and
    problem+json for everything else."""
    success: Schema = {"description": summary}
    if status != 204:
        success["content"] = {media_type: {"schema": ok if ok is not None else {}}}
    if headers:
        success["headers"] = {k: {"schema": v} for k, v in headers.items()}
    out: Schema = {
        "summary": summary,
        "responses": {str(status): success, "default": {"$ref": "#/components/responses/Problem"}},
    }
    if body is not None:
        out["requestBody"] = body
    if security is not None:
        out["security"] = security
    if parameters:
        out["parameters"] = parameters
    if tags:
        out["tags"] = list(tags)
    return out


def query(name: str, schema: Schema, description: str = "", required: bool = False) -> Schema:
    out: Schema = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        out["description"] = description
    return out


def header(name: str, schema: Schema, description: str = "") -> Schema:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": schema,
        "description": description,
    }


PUBLIC: list[dict[str, list[str]]] = []  # an operation needing no credentials
ETAG: dict[str, Schema] = {"ETag": {"type": "string", "pattern": '^"[0-9]+"$'}}
IF_MATCH = header("If-Match", STRING, 'the version the change applies to, e.g. "3"')

PROBLEM_ERROR: Schema = obj(
    {"path": STRING, "code": STRING, "message": STRING}, "path", "code", "message"
)
PROBLEM: Schema = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string", "description": "names the reason code"},
        "title": STRING,
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": STRING,
        "reason": {"type": "string", "description": "the stable reason code"},
        "errors": {"type": "array", "items": ref("ProblemError")},
    },
    "required": ["type", "title", "status", "detail"],
}


def manifest_component() -> Schema:
    """The plugin manifest's JSON Schema, as a component (without its own `$id`: references
    inside the description resolve against the document)."""
    schema = dict(manifest_json_schema())
    schema.pop("$id", None)
    schema.pop("$schema", None)
    return schema


def components(extra_schemas: dict[str, Schema]) -> Schema:
    return {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "an admin token, a plugin token or a registration token, "
                "as each operation says",
            }
        },
        "responses": {
            "Problem": {
                "description": "problem details (RFC 9457)",
                "content": {PROBLEM_MEDIA_TYPE: {"schema": ref("Problem")}},
            }
        },
        "schemas": {
            "Problem": PROBLEM,
            "ProblemError": PROBLEM_ERROR,
            "Manifest": manifest_component(),
            **extra_schemas,
        },
    }
