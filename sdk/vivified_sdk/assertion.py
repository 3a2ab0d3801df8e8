"""Verify the `X-Vivified-Assertion` header core adds to every operator-lane request.

The assertion is an EdDSA JWT signed by core: `aud` is your plugin id, `sub` the calling
plugin, plus `method`, `path` and `rid` (request id); it lives at most 60 seconds. Check it
against core's JWKS (`GET {core}/.well-known/jwks.json`) before trusting `X-Vivified-Caller`:

    jwks = fetch_jwks("http://core:8000")
    claims = verify_assertion(request.headers["x-vivified-assertion"], jwks=jwks,
                              audience="my-plugin", method=request.method, path=request.url.path)
    caller = claims["sub"]
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from typing import Any

import jwt

ASSERTION_TYP = "vivified-assertion+jwt"
MAX_LIFETIME = 60


class InvalidAssertion(Exception):
    """The assertion is missing, forged, expired or about another request."""


def fetch_jwks(core_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """Core's public keys; cache them and fetch again when a token names an unknown `kid`."""
    url = core_url.rstrip("/") + "/.well-known/jwks.json"
    if not url.startswith(("http://", "https://")):
        raise ValueError("core_url must be an http(s) URL")
    # Core is reached directly: HTTP(S)_PROXY set for egress must not capture this call.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:  # scheme checked above
        doc: dict[str, Any] = json.load(resp)
    return doc


def verify_assertion(
    token: str,
    *,
    jwks: Mapping[str, Any],
    audience: str,
    issuer: str = "vivified-core",
    method: str | None = None,
    path: str | None = None,
    leeway: float = 30,
) -> dict[str, Any]:
    """The verified claims, or InvalidAssertion. Pass `method`/`path` to bind it to the request."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidAssertion("malformed assertion") from exc
    if header.get("alg") != "EdDSA" or header.get("typ") != ASSERTION_TYP:
        raise InvalidAssertion("not a core assertion")
    if any(h in header for h in ("jku", "x5u", "jwk", "x5c", "crit")):
        raise InvalidAssertion("unexpected header")
    keys = {k.get("kid"): k for k in jwks.get("keys", [])}
    jwk = keys.get(header.get("kid"))
    if jwk is None:
        raise InvalidAssertion("unknown signing key (refresh the JWKS)")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            jwt.PyJWK(dict(jwk)).key,
            algorithms=["EdDSA"],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "iat", "sub", "aud", "iss", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidAssertion(f"invalid assertion: {exc}") from exc
    if claims["exp"] - claims["iat"] > MAX_LIFETIME:
        raise InvalidAssertion("assertion lifetime too long")
    if method is not None and claims.get("method") != method.upper():
        raise InvalidAssertion("assertion is for another method")
    if path is not None and claims.get("path") != path:
        raise InvalidAssertion("assertion is for another path")
    return claims
