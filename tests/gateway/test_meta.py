"""Core's own routes: liveness, readiness, JWKS, OpenAPI, errors for unknown routes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import BaseRoute, Mount, Route
from support.procs import ADMIN_TOKEN

from vivified.config.settings import load_settings
from vivified.gateway.app import create_app


def test_healthz_and_readyz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"


def test_jwks_publishes_ed25519_keys(client: httpx.Client) -> None:
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    assert keys
    assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and k["alg"] == "EdDSA" for k in keys)
    assert all("d" not in k for k in keys)  # never the private part


def _app_operations(routes: Iterable[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(path, method) of every route of the app, Mounts included; a route that takes every
    method (an ASGI app: the operator lane) is `(path, "*")`."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            found |= _app_operations(route.routes, prefix + route.path)
        elif isinstance(route, Route) and route.include_in_schema:
            methods = (route.methods or {"*"}) - {"HEAD"}
            found |= {(prefix + route.path_format, m.lower()) for m in methods}
    return found


def test_openapi_describes_every_route(client: httpx.Client, tmp_path: Path) -> None:
    settings = load_settings(
        environ={"VIVIFIED_DATA_DIR": str(tmp_path), "VIVIFIED_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    routes = _app_operations(create_app(settings).app.routes)
    assert len(routes) > 40
    r = client.get("/openapi.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    described = {
        (path, method) for path, ops in doc["paths"].items() for method in ops if method != "head"
    }
    every_method = {path for path, m in routes if m == "*"}
    assert every_method == {"/{service}/{rest}"}  # the operator lane, and only it
    for path in every_method:  # described with the methods a caller uses
        assert {m for p, m in described if p == path} >= {"get", "post", "put", "delete"}, path
    expected = {(p, m) for p, m in routes if m != "*"}
    assert sorted(expected - described) == []  # nothing the app serves is left out
    assert sorted(described - expected - {(p, m) for p, m in described if p in every_method}) == []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"], (method, path)
            assert op["responses"], (method, path)
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), (method, path)


def test_manifest_schema_is_served(client: httpx.Client) -> None:
    schema = client.get("/plugins/manifest.schema.json").json()
    assert "id" in schema["properties"]


def test_unknown_route_is_problem_json(client: httpx.Client) -> None:
    r = client.get("/no-such-thing")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 404
    # two segments or more is the operator lane: a plugin token comes first
    r = client.get("/no/such/thing")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"


def test_request_id_is_ours_not_the_callers(client: httpx.Client) -> None:
    r = client.get("/healthz", headers={"X-Vivified-Request-Id": "spoofed"})
    assert r.headers["x-vivified-request-id"] != "spoofed"
    assert len(r.headers["x-vivified-request-id"]) == 32


# -- the OpenAPI description: valid, and real schemas for every JSON route ----------------------

# Operations that take no request body (everything else that writes does).
NO_BODY = {
    ("post", "/admin/keys/rotate"),
    ("post", "/admin/egress/ca/rotate"),
    ("post", "/plugins/{plugin_id}/enable"),
    ("post", "/plugins/{plugin_id}/disable"),
    ("post", "/plugins/{plugin_id}/token"),
    ("post", "/admin/events/dead-letters/{seq}/replay"),
    ("post", "/admin/oidc/users/{user_id}/disable"),
    ("post", "/admin/oidc/users/{user_id}/enable"),
}


def _json_operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every admin, plugin, event and meta operation."""
    return [
        (method, path, op)
        for path, ops in doc["paths"].items()
        if not path.startswith("/console") and path != "/{service}/{rest}"
        for method, op in ops.items()
    ]


def _served(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_openapi_is_a_valid_openapi_31_document(client: httpx.Client) -> None:
    doc = _served(client)
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # openapi-spec-validator: structure, $refs, unique operation ids
    assert all(":" not in path for path in doc["paths"])  # no `{rest:path}` converters
    assert "/{service}/{rest}" in doc["paths"]


def test_openapi_problem_component(client: httpx.Client) -> None:
    comps = _served(client)["components"]
    problem = comps["schemas"]["Problem"]
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "reason", "errors"}
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert comps["responses"]["Problem"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    assert comps["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": comps["securitySchemes"]["bearer"]["description"],
    }
    assert comps["schemas"]["Manifest"]["properties"]["id"]["type"] == "string"
    assert "$id" not in comps["schemas"]["Manifest"]


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param("success", id="2xx-has-a-schema-or-is-204"),
        pytest.param("problem", id="errors-are-the-problem-component"),
        pytest.param("body", id="writes-describe-their-body"),
    ],
)
def test_openapi_json_operations_have_real_schemas(client: httpx.Client, rule: str) -> None:
    doc = _served(client)
    broken = []
    for method, path, op in _json_operations(doc):
        responses = op["responses"]
        success = [s for s in responses if s.startswith("2")]
        if rule == "success":
            ok = bool(success) and all(
                s == "204" or any(m.get("schema") for m in responses[s].get("content", {}).values())
                for s in success
            )
        elif rule == "problem":
            ok = responses.get("default") == {"$ref": "#/components/responses/Problem"}
        else:
            wants = method in {"post", "put", "patch"} and (method, path) not in NO_BODY
            content = op.get("requestBody", {}).get("content", {})
            ok = not wants or any(m.get("schema") for m in content.values())
        if not ok:
            broken.append((method, path))
    assert broken == []
