"""ID tokens and access tokens from the OpenID Provider, checked with `authlib.jose`.

Every refusal is a `TokenRefused` with a stable reason code (it ends up in the audit record
and on the page); the token itself is never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from authlib.jose import JsonWebToken  # type: ignore[import-untyped]
from authlib.jose.errors import JoseError  # type: ignore[import-untyped]

from vivified.gateway.oidc.jwks import KeySet

LEEWAY = 60.0  # seconds of clock skew tolerated on exp, iat and nbf
MAX_TOKEN_LENGTH = 16 * 1024


class TokenRefused(Exception):
    """A token we do not accept: `code` is stable, `message` a sentence without the token."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _b64_json(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise TokenRefused("malformed_token", f"the token's {what} cannot be read") from exc
    if not isinstance(value, dict):
        raise TokenRefused("malformed_token", f"the token's {what} is not a JSON object")
    return value


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The unverified header and claims of a compact JWS (for routing and the checks below)."""
    parts = token.split(".")
    if len(token) > MAX_TOKEN_LENGTH or len(parts) != 3:
        raise TokenRefused("malformed_token", "the token is not a signed JWT")
    return _b64_json(parts[0], "header"), _b64_json(parts[1], "claims")


@dataclass(frozen=True)
class Validator:
    """Checks tokens of one issuer against its JWKS."""

    issuer: str
    keys: KeySet
    algorithms: Sequence[str]

    async def _verify(self, token: str) -> dict[str, Any]:
        header, _claims = peek(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenRefused(
                "bad_algorithm",
                f"tokens signed with {alg!r} are not accepted (only an "
                "asymmetric algorithm the provider announced)",
            )
        for risky in ("jku", "x5u", "jwk", "crit"):
            if risky in header:
                raise TokenRefused("bad_header", f"tokens with a {risky!r} header are refused")
        kid = header.get("kid", "")
        key = await self.keys.key(kid if isinstance(kid, str) else "")
        if key is None:
            raise TokenRefused(
                "unknown_key", "the token is signed by a key the issuer does not publish"
            )
        try:
            claims = JsonWebToken([alg]).decode(token, key)
        except JoseError as exc:
            raise TokenRefused("bad_signature", "the token's signature does not verify") from exc
        return dict(claims)

    def _common(self, claims: dict[str, Any], now: float) -> None:
        if claims.get("iss") != self.issuer:
            raise TokenRefused("wrong_issuer", "the token comes from another issuer")
        exp = claims.get("exp")
        if not _number(exp):
            raise TokenRefused("malformed_token", "the token has no expiry")
        if exp <= now - LEEWAY:
            raise TokenRefused("token_expired", "the token has expired")
        iat = claims.get("iat")
        if not _number(iat) or iat > now + LEEWAY:
            raise TokenRefused("bad_iat", "the token's issue time is missing or in the future")
        nbf = claims.get("nbf")
        if nbf is not None and (not _number(nbf) or nbf > now + LEEWAY):
            raise TokenRefused("not_yet_valid", "the token is not valid yet")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise TokenRefused("no_subject", "the token names no subject")

    async def id_token(self, token: str, *, client_id: str, nonce: str) -> dict[str, Any]:
        """The claims of a valid ID token for `client_id` that carries `nonce`."""
        claims = await self._verify(token)
        self._common(claims, time.time())
        audiences = _audiences(claims)
        if client_id not in audiences:
            raise TokenRefused("wrong_audience", "the ID token was issued to another client")
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != client_id:
            raise TokenRefused("wrong_azp", "the ID token's authorized party is another client")
        given = claims.get("nonce")
        if not isinstance(given, str) or not hmac.compare_digest(given, nonce):
            raise TokenRefused("wrong_nonce", "the ID token does not answer this sign-in")
        return claims

    async def access_token(self, token: str, *, audience: str) -> dict[str, Any]:
        """The claims of a valid JWT access token whose `aud` holds `audience`."""
        claims = await self._verify(token)
        self._common(claims, time.time())
        if audience not in _audiences(claims):
            raise TokenRefused("wrong_audience", "the access token is for another audience")
        return claims


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []
