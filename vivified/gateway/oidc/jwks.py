"""The provider's signing keys, by `kid`; an unknown `kid` refetches the JWKS, rate limited.

A provider rotates its keys by publishing a new one: the first token signed with it names a
`kid` we have not seen, so we read the JWKS again. Tokens with made-up `kid`s must not make
us hammer the provider: after one refetch, the next waits `min_refetch_interval` seconds
(concurrent misses share one fetch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from authlib.jose import JsonWebKey  # type: ignore[import-untyped]
from authlib.jose.errors import JoseError  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

Fetch = Callable[[], Awaitable[dict[str, Any]]]


class KeySetError(Exception):
    """The JWKS could not be read or holds no usable key."""


def parse_jwks(document: dict[str, Any]) -> dict[str, Any]:
    """Signing keys by `kid` (a key without `kid` is filed under "")."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise KeySetError("the JWKS has no `keys` list")
    out: dict[str, Any] = {}
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("kty") == "oct":  # a shared secret is never a provider's signing key
            continue
        try:
            out[str(jwk.get("kid", ""))] = JsonWebKey.import_key(jwk)
        except (JoseError, ValueError, TypeError) as exc:
            log.warning("ignoring a JWKS key that cannot be read (kid %r): %s", jwk.get("kid"), exc)
    if not out:
        raise KeySetError("the JWKS holds no usable signing key")
    return out


class KeySet:
    """The cached JWKS of one issuer."""

    def __init__(self, fetch: Fetch, *, min_refetch_interval: float = 30.0) -> None:
        self._fetch = fetch
        self._keys: dict[str, Any] = {}
        self._min_interval = min_refetch_interval
        self._last_refetch: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def load(self) -> None:
        """Read the JWKS (at start); KeySetError when it cannot be used."""
        self._keys = parse_jwks(await self._fetch())
        self.fetches += 1

    async def key(self, kid: str) -> Any | None:
        """The key for `kid`, refetching the JWKS once if it is unknown (rate limited)."""
        found = self._find(kid)
        if found is not None:
            return found
        async with self._lock:
            found = self._find(kid)  # another request may have refetched meanwhile
            if found is not None:
                return found
            now = time.monotonic()
            if self._last_refetch is not None and now - self._last_refetch < self._min_interval:
                return None
            self._last_refetch = now
            try:
                await self.load()
            except Exception as exc:  # the old keys stay; this token is refused
                log.warning("cannot refetch the OpenID Provider's JWKS: %s", exc)
                return None
        return self._find(kid)

    def _find(self, kid: str) -> Any | None:
        if kid in self._keys:
            return self._keys[kid]
        if not kid and len(self._keys) == 1:  # a token without `kid`, a JWKS of one key
            return next(iter(self._keys.values()))
        return None
