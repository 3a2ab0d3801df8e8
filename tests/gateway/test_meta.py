"""Core's own routes: liveness, readiness, JWKS, OpenAPI, errors for unknown routes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import httpx
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
