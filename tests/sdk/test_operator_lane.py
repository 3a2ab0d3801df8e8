"""call() between two plugins through a real gateway; the middleware on the target; the JWKS
cache across a key rotation."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sdk.helpers import Gateway
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from support.manifests import simple
from support.upstream import serve_in_thread
from vivified_sdk import (
    AssertionMiddleware,
    Backoff,
    JwksCache,
    NotFound,
    PermissionDenied,
    Plugin,
)

SEEN: list[dict[str, str]] = []


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def target_app(audience: str, jwks: JwksCache) -> Any:
    async def item(request: Request) -> JSONResponse:
        SEEN.append(dict(request.headers))
        return JSONResponse(
            {"id": request.path_params["id"], "caller": request.state.vivified_caller}
        )

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[Route("/api/items/{id}", item), Route("/health", health)],
    )
    app.add_middleware(AssertionMiddleware, audience=audience, jwks=jwks)
    return app


def plugin(gw: Gateway, tmp_path: Path, manifest: dict[str, Any]) -> Plugin:
    return Plugin(
        gateway_url=gw.url,
        manifest=manifest,
        registration_token=gw.registration_token(),
        state_dir=tmp_path / manifest["id"],
        heartbeat_interval=None,
        backoff=Backoff(initial=0.1, max_delay=0.5, max_elapsed=30),
    )


@pytest.fixture
def stock(gateway: Gateway) -> Iterator[tuple[str, str]]:
    """A target plugin's app (not registered yet): its URL and id."""
    pid = uid("stock")
    jwks = JwksCache(gateway.url, min_refetch_interval=1.0)
    with serve_in_thread(target_app(pid, jwks)) as url:
        yield url, pid


async def test_call_reaches_the_target_and_a_denied_call_raises_its_reason(
    gateway: Gateway, tmp_path: Path, stock: tuple[str, str]
) -> None:
    url, sid = stock
    oid = uid("orders")
    target = plugin(gateway, tmp_path, simple(sid, base_url=url))
    caller = plugin(gateway, tmp_path, simple(oid, dependencies=[sid]))
    stranger = plugin(gateway, tmp_path, simple(uid("stranger")))
    async with target, caller, stranger:
        r = await caller.call(sid, "GET", "items/7")
        assert r.status_code == 200
        assert r.json() == {"id": "7", "caller": oid}

        with pytest.raises(PermissionDenied) as denied:
            await stranger.call(sid, "GET", "items/7")
        assert (denied.value.status, denied.value.reason) == (403, "not_permitted")

        with pytest.raises(NotFound) as missing:
            await caller.call(sid, "GET", "secret/1")
        assert (missing.value.status, missing.value.reason) == (404, "endpoint_not_declared")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(kid: str, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": "vivified-core",
        "aud": "stock",
        "sub": "orders",
        "iat": now,
        "nbf": now,
        "exp": now + 30,
        "jti": "x",
        "method": "GET",
        "path": "/api/items/7",
        "rid": "r",
        **claims,
    }
    key = Ed25519PrivateKey.generate()
    return jwt.encode(
        body, key, algorithm="EdDSA", headers={"kid": kid, "typ": "vivified-assertion+jwt"}
    )


def unsigned(kid: str) -> str:
    head = _b64(json.dumps({"alg": "none", "typ": "vivified-assertion+jwt", "kid": kid}).encode())
    return f"{head}.{_b64(json.dumps({'sub': 'orders', 'aud': 'stock'}).encode())}."


CASES: list[Any] = [
    pytest.param(lambda kid, real: None, "missing X-Vivified-Assertion", id="missing"),
    pytest.param(lambda kid, real: "garbage", "malformed assertion", id="garbage"),
    pytest.param(lambda kid, real: forged(kid), "invalid assertion", id="forged-signature"),
    pytest.param(lambda kid, real: unsigned(kid), "not a core assertion", id="alg-none"),
    pytest.param(lambda kid, real: forged("no-such-kid"), "unknown signing key", id="unknown-kid"),
    pytest.param(lambda kid, real: real, None, id="replayed-on-another-path"),
]


@pytest.mark.parametrize(("make", "detail"), CASES)
async def test_the_middleware_refuses_calls_core_did_not_vouch_for(
    gateway: Gateway,
    tmp_path: Path,
    stock: tuple[str, str],
    make: Callable[[str, str], str | None],
    detail: str | None,
) -> None:
    url, sid = stock
    async with httpx.AsyncClient(trust_env=False) as c:
        kid = (await c.get(gateway.url + "/.well-known/jwks.json")).json()["keys"][-1]["kid"]
    real = ""
    if detail is None:  # a real assertion, captured at the target, sent for another path
        target = plugin(gateway, tmp_path, simple(sid, base_url=url))
        caller = plugin(gateway, tmp_path, simple(uid("orders"), dependencies=[sid]))
        async with target, caller:
            await caller.call(sid, "GET", "items/7")
        real = SEEN[-1]["x-vivified-assertion"]
        detail = "assertion is for another path"
    token = make(kid, real)
    headers = {"X-Vivified-Caller": "orders"}
    if token is not None:
        headers["X-Vivified-Assertion"] = token
    async with httpx.AsyncClient(base_url=url, trust_env=False) as c:
        r = await c.get("/api/items/8", headers=headers)
        assert (await c.get("/health")).status_code == 200  # outside /api/: untouched
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["reason"] == "invalid_assertion"
    assert body["status"] == 401
    assert detail in body["detail"]


async def test_the_jwks_cache_follows_a_key_rotation_with_one_rate_limited_refetch(
    fresh_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    gw = fresh_gateway().start()
    jwks = JwksCache(gw.url, min_refetch_interval=1.0)
    with serve_in_thread(target_app("stock", jwks)) as url:
        target = plugin(gw, tmp_path, simple("stock", base_url=url))
        caller = plugin(gw, tmp_path, simple("orders", dependencies=["stock"]))
        async with target, caller:
            assert (await caller.call("stock", "GET", "items/1")).status_code == 200
            old_kids = set(jwks.kids)
            assert jwks.fetches == 1

            rotated = gw.cli("keys", "rotate")
            assert rotated.returncode == 0, rotated.stderr
            gw.restart()  # same port: it now signs with the new key

            r = await caller.call("stock", "GET", "items/2")  # the old token still works
            assert r.json()["caller"] == "orders"
            assert jwks.fetches == 2  # one refetch for the new kid
            assert jwks.kids > old_kids
            new_kid = jwt.get_unverified_header(SEEN[-1]["x-vivified-assertion"])["kid"]
            assert new_kid not in old_kids

            # unknown kids within the interval do not make the cache hammer core
            async with httpx.AsyncClient(base_url=url, trust_env=False) as c:
                for _ in range(3):
                    r = await c.get(
                        "/api/items/1", headers={"X-Vivified-Assertion": forged("bogus-kid")}
                    )
                    assert r.status_code == 401
            assert jwks.fetches == 2
