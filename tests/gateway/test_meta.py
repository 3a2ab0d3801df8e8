"""Core's own routes: liveness, readiness, JWKS, OpenAPI, errors for unknown routes."""

from __future__ import annotations

import httpx


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


def test_openapi_describes_every_route(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    for path in (
        "/plugins/register",
        "/plugins/{plugin_id}",
        "/admin/registration-tokens",
        "/admin/audit",
        "/.well-known/jwks.json",
        "/healthz",
    ):
        assert path in doc["paths"], path


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
