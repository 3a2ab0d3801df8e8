"""Core's signing keys, cached: fetched once, fetched again when a token names a new `kid`.

Core rotates its Ed25519 key now and then; a token signed with the new key names a `kid` the
cache has not seen, so the cache fetches `{gateway}/.well-known/jwks.json` again — at most
once per `min_refetch_interval` seconds, so that forged tokens with random `kid`s cannot make
a plugin hammer core.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt

from vivified_sdk.assertion import InvalidAssertion, verify_assertion

JWKS_PATH = "/.well-known/jwks.json"


class JwksCache:
    """An async, rate-limited cache of core's JWKS.

    `verify(token, audience=..., method=..., path=...)` checks an assertion with the cached
    keys and refetches once on an unknown `kid` (rotation).
    """

    def __init__(
        self,
        gateway_url: str,
        *,
        min_refetch_interval: float = 30.0,
        timeout: float = 5.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        url = gateway_url.rstrip("/") + JWKS_PATH
        if not url.startswith(("http://", "https://")):
            raise ValueError("gateway_url must be an http(s) URL")
        self.url = url
        self.min_refetch_interval = min_refetch_interval
        self._timeout = timeout
        self._client = client
        self._jwks: dict[str, Any] = {"keys": []}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def kids(self) -> set[str]:
        return {str(k.get("kid")) for k in self._jwks.get("keys", []) if isinstance(k, dict)}

    async def _fetch(self) -> None:
        self.fetches += 1
        self._fetched_at = time.monotonic()
        if self._client is not None:
            resp = await self._client.get(self.url, timeout=self._timeout)
        else:
            async with httpx.AsyncClient(trust_env=False, timeout=self._timeout) as c:
                resp = await c.get(self.url)
        resp.raise_for_status()
        doc = resp.json()
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ValueError("core's JWKS is not a key set")
        self._jwks = doc

    async def keys(self, want_kid: str | None = None) -> dict[str, Any]:
        """The key set; fetched when empty, or when `want_kid` is unknown and the last fetch
        is older than `min_refetch_interval`."""
        if self._fetched_at is not None and (want_kid is None or want_kid in self.kids):
            return self._jwks
        async with self._lock:
            if self._fetched_at is None or (
                want_kid is not None
                and want_kid not in self.kids
                and time.monotonic() - self._fetched_at >= self.min_refetch_interval
            ):
                await self._fetch()
        return self._jwks

    async def verify(
        self,
        token: str,
        *,
        audience: str,
        method: str | None = None,
        path: str | None = None,
    ) -> dict[str, Any]:
        """The verified claims of a core assertion, or InvalidAssertion."""
        kid = _kid(token)
        try:
            jwks = await self.keys(kid)
        except (httpx.HTTPError, ValueError) as exc:
            raise InvalidAssertion("core's keys are unavailable") from exc
        return verify_assertion(token, jwks=jwks, audience=audience, method=method, path=path)


def _kid(token: str) -> str | None:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise InvalidAssertion("malformed assertion") from exc
    return kid if isinstance(kid, str) else None
