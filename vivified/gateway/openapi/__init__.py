"""The OpenAPI 3.1 description of core's HTTP API, built from the app's routes.

Every route the app serves is described: the JSON routes (admin, plugin, event and meta)
from the tables in `admin` and `plugins` (request and 2xx schemas, problem+json for the
rest), the console's HTML pages and the operator lane from `console`. A route found in
no table still appears, with its docstring's first line and problem+json only
(`tests/gateway/test_meta.py` fails while one does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from starlette.routing import BaseRoute, Mount, Route

from vivified.gateway.openapi import admin, admin_schemas, plugins
from vivified.gateway.openapi.components import Schema, components
from vivified.gateway.openapi.console import (
    CONSOLE_SCHEME,
    LANE_METHODS,
    console_operation,
    lane_operation,
)

OPERATIONS: dict[tuple[str, str], Schema] = {**admin.OPERATIONS, **plugins.OPERATIONS}
SCHEMAS: dict[str, Schema] = {**admin_schemas.SCHEMAS, **plugins.SCHEMAS}
PLUGIN_ID: Schema = {
    "type": "string",
    "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$",
    "minLength": 1,
    "maxLength": 63,
}
RECORD_ID: Schema = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
SEQUENCE: Schema = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
PATH_PARAMETERS: dict[str, Schema] = {
    "plugin_id": PLUGIN_ID,
    "seq": SEQUENCE,
    "rev": SEQUENCE,
    "token_id": RECORD_ID,
    "grant_id": RECORD_ID,
    "user_id": RECORD_ID,
    "contract": {"type": "string", "pattern": "^[A-Z][A-Za-z0-9]*Plugin$", "maxLength": 128},
    "service": {"type": "string", "minLength": 1},
    "rest": {"type": "string", "description": "the rest of the path, slashes included"},
}
STRING_PARAMETER: Schema = {"type": "string"}


def schema_routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    """(full path, route) of every route in the schema, the routes of Mounts included; the
    path is the route's format, without converters (`{rest:path}` → `{rest}`)."""
    for route in routes:
        if isinstance(route, Mount):
            yield from schema_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route) and route.include_in_schema:
            yield prefix + route.path_format, route


def _fallback(route: Route) -> Schema:
    summary = (route.endpoint.__doc__ or route.name).strip().splitlines()[0]
    return {
        "summary": summary,
        "responses": {"default": {"$ref": "#/components/responses/Problem"}},
    }


def operation_id(method: str, path: str) -> str:
    """Unique per (method, path): `get /admin/users/{user_id}` → `get_admin_users_user_id`;
    a trailing slash adds `_index` (`/console` and `/console/` are two routes)."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    return f"{method}_{name}" + ("_index" if path.endswith("/") and path != "/" else "")


def operation(path: str, method: str, route: Route) -> Schema:
    """The description of `method path`, its path parameters first."""
    if route.methods is None:
        base = lane_operation(method)
    elif (method, path) in OPERATIONS:
        base = OPERATIONS[(method, path)]
    elif path == "/console" or path.startswith("/console/"):
        base = console_operation(method, _fallback(route)["summary"])
    else:
        base = _fallback(route)
    op: Schema = {**base, "operationId": operation_id(method, path)}
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": PATH_PARAMETERS.get(name, STRING_PARAMETER),
        }
        for name in route.param_convertors
    ]
    if params or "parameters" in base:
        op["parameters"] = params + list(base.get("parameters", []))
    return op


def openapi_document(routes: list[BaseRoute]) -> dict[str, Any]:
    """An OpenAPI 3.1 description of `routes`."""
    paths: dict[str, dict[str, Any]] = {}
    for path, route in schema_routes(routes):
        methods = LANE_METHODS if route.methods is None else sorted(route.methods - {"HEAD"})
        for method in methods:
            paths.setdefault(path, {})[method.lower()] = operation(path, method.lower(), route)
    comps = components(SCHEMAS)
    comps["securitySchemes"]["consoleSession"] = CONSOLE_SCHEME
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Vivified core",
            "version": "0.1.0",
            "description": "Core's HTTP API. Errors are RFC 9457 problem details "
            "(application/problem+json) with a stable `reason` code.",
        },
        "components": comps,
        "security": [{"bearer": []}],
        "paths": paths,
    }
