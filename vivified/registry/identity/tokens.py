"""Plugin tokens and caller assertions: Ed25519-signed JWTs, one strict verifier.

The verifier pins everything it can before it looks at a signature: size, the header's
`alg`, `typ` and `kid`, and no key-carrying headers (`jku`, `x5u`, `jwk`, `x5c`) or `crit`.
Only then is the signature checked with the public key of that `kid`, and the claims: `iss`,
`aud`, `exp` (required), `nbf`, `iat`, and the plugin's current token generation `gen`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _escape
from typing import Any, Protocol

import jwt

from vivified.registry.errors import DomainError
from vivified.registry.identity.keys import KeyStore

MAX_TOKEN_BYTES = 8 * 1024
PLUGIN_TYP = "vivified-plugin+jwt"
ASSERTION_TYP = "vivified-assertion+jwt"
AUDIENCE = "vivified"
MAX_LEEWAY = 30
MAX_ASSERTION_TTL = 60
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")
_ALLOWED_HEADERS = frozenset({"alg", "typ", "kid"})

CurrentGen = Callable[[str], int | None]
# What a snapshot behind the registry may say of a good token: its plugin was registered, or its
# generation raised (a token refresh), after the snapshot was loaded (`verify_current`).
BEHIND_CODES = frozenset({"unknown_plugin", "revoked"})
# Every code a TokenError can carry (all of them mean "not authenticated": 401 / 407).
TOKEN_ERROR_CODES = frozenset(
    {
        "missing_token",
        "duplicate_authorization",
        "malformed_authorization",
        "token_in_query",
        "token_too_large",
        "malformed_token",
        "bad_algorithm",
        "forbidden_header",
        "wrong_token_type",
        "unknown_key",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "missing_claim",
        "unknown_plugin",
        "revoked",
    }
)


class TokenError(DomainError):
    """A refused token: a stable `code` and a message that never repeats the token."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: int
    jti: str

    def __repr__(self) -> str:  # never print the token itself
        return f"IssuedToken(jti={self.jti!r}, expires_at={self.expires_at})"


@dataclass(frozen=True)
class PluginClaims:
    plugin_id: str
    gen: int
    jti: str
    expires_at: int


@dataclass(frozen=True)
class AssertionClaims:
    """Core's statement to a target plugin: `caller` called `method path` in request `rid`."""

    caller: str
    audience: str
    method: str
    path: str
    request_id: str
    jti: str
    expires_at: int


def _header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, parsed strictly (before any signature check)."""
    head, dot, _ = token.partition(".")
    try:
        if not dot or not head:
            raise ValueError("no header")
        raw = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
        header = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise TokenError("malformed_token", "the token is not a well-formed JWS") from exc
    if not isinstance(header, dict) or token.count(".") != 2:
        raise TokenError("malformed_token", "the token is not a well-formed JWS")
    return header


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # built once, not per call
# An assertion's payload, as `_ENCODE` would write its claims (same keys, same order, strings
# escaped by json's own ASCII escaper): a third of the cost, once per operator-lane call.
_ASSERTION_PAYLOAD = (
    '{"iss":%s,"aud":%s,"sub":%s,"iat":%d,"nbf":%d,"exp":%d,"jti":%s,"method":%s,"path":%s,'
    '"rid":%s}'
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _cache_key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenService:
    """Issues and verifies tokens with the keys of a `KeyStore`."""

    def __init__(
        self,
        keys: KeyStore,
        *,
        issuer: str,
        ttl: int,
        leeway: int = MAX_LEEWAY,
        cache_size: int = 10_000,
    ) -> None:
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY} seconds")
        self._keys = keys
        self._issuer = issuer
        self._ttl = ttl
        self._leeway = leeway
        self._cache: OrderedDict[bytes, PluginClaims] = OrderedDict()
        self._cache_size = cache_size
        self._headers: dict[tuple[str, str], str] = {}

    # -- issuing -----------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any], typ: str) -> str:
        return self._sign_json(_ENCODE(claims), typ)

    def _sign_json(self, payload_json: str, typ: str) -> str:
        """Compact JWS (EdDSA) built directly: this runs once per operator-lane request, and
        PyJWT's generic path costs twice the signature itself. `verify_*` stays on PyJWT."""
        kid = self._keys.current_kid
        head = self._headers.get((kid, typ))
        if head is None:
            raw = _ENCODE({"alg": "EdDSA", "typ": typ, "kid": kid})
            head = self._headers[(kid, typ)] = _b64(raw.encode())
        payload = _b64(payload_json.encode("ascii"))
        signing_input = f"{head}.{payload}"
        signature = self._keys.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{_b64(signature)}"

    def issue_plugin_token(
        self, plugin_id: str, gen: int, *, now: float | None = None
    ) -> IssuedToken:
        now_i = int(time.time() if now is None else now)
        jti = uuid.uuid4().hex
        exp = now_i + self._ttl
        claims = {
            "iss": self._issuer,
            "aud": AUDIENCE,
            "sub": plugin_id,
            "iat": now_i,
            "nbf": now_i,
            "exp": exp,
            "jti": jti,
            "gen": gen,
        }
        return IssuedToken(self._sign(claims, PLUGIN_TYP), exp, jti)

    def issue_assertion(
        self,
        caller: str,
        target: str,
        *,
        method: str,
        path: str,
        request_id: str,
        ttl: int = MAX_ASSERTION_TTL,
    ) -> IssuedToken:
        now_i = int(time.time())
        ttl = max(1, min(ttl, MAX_ASSERTION_TTL))
        jti = os.urandom(16).hex()  # uuid4 costs 4x as much, once per lane call
        payload = _ASSERTION_PAYLOAD % (
            _escape(self._issuer),
            _escape(target),
            _escape(caller),
            now_i,
            now_i,
            now_i + ttl,
            _escape(jti),
            _escape(method),
            _escape(path),
            _escape(request_id),
        )
        return IssuedToken(self._sign_json(payload, ASSERTION_TYP), now_i + ttl, jti)

    # -- verifying ---------------------------------------------------------------------------

    async def _decode(self, token: str, typ: str, audience: str) -> dict[str, Any]:
        if len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
            raise TokenError("token_too_large", f"tokens are at most {MAX_TOKEN_BYTES} bytes")
        header = _header(token)
        if header.get("alg") != "EdDSA":
            raise TokenError("bad_algorithm", "only EdDSA-signed tokens are accepted")
        for name in FORBIDDEN_HEADERS:
            if name in header:
                raise TokenError("forbidden_header", f"the {name!r} header is not accepted")
        if set(header) - _ALLOWED_HEADERS:
            raise TokenError("forbidden_header", "the token carries unexpected headers")
        if header.get("typ") != typ:
            raise TokenError("wrong_token_type", f"expected a {typ} token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("unknown_key", "the token names no signing key")
        key = self._keys.public_key(kid)
        if key is None and await self._keys.refresh_if_unknown(kid):
            key = self._keys.public_key(kid)
        if key is None:
            raise TokenError("unknown_key", "the token was signed by a key core does not publish")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                audience=audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise TokenError("bad_signature", "the token signature does not verify") from exc
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("expired", "the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenError("not_yet_valid", "the token is not valid yet") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("wrong_issuer", "the token was not issued by this core") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("wrong_audience", "the token is meant for another audience") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError("missing_claim", f"the token lacks the {exc.claim!r} claim") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("malformed_token", "the token could not be verified") from exc
        if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("jti"), str):
            raise TokenError("malformed_token", "the token's sub and jti must be strings")
        return claims

    async def verify_plugin_token(self, token: str, current_gen: CurrentGen) -> PluginClaims:
        """Verify fully (signature included); raises TokenError. Caches the result."""
        claims = await self._decode(token, PLUGIN_TYP, AUDIENCE)
        gen = claims.get("gen")
        if not isinstance(gen, int) or isinstance(gen, bool):
            raise TokenError("missing_claim", "the token lacks an integer 'gen' claim")
        result = PluginClaims(claims["sub"], gen, claims["jti"], int(claims["exp"]))
        self._check_current(result, current_gen)
        key = _cache_key(token)
        self._cache[key] = result
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result

    def accepted_until(self, claims: PluginClaims) -> float:
        """When this service stops accepting the token: its `exp` plus the clock-skew leeway."""
        return float(claims.expires_at + self._leeway)

    def verify_plugin_token_cached(
        self, token: str, current_gen: CurrentGen
    ) -> PluginClaims | None:
        """A verified token from the cache, re-checked for expiry and revocation; None on a
        miss (the caller then runs the full `verify_plugin_token`)."""
        key = _cache_key(token)
        claims = self._cache.get(key)
        if claims is None:
            return None
        if time.time() >= self.accepted_until(claims):
            self._cache.pop(key, None)
            return None
        try:
            self._check_current(claims, current_gen)
        except TokenError:
            self._cache.pop(key, None)
            return None  # the full verification raises the precise error
        return claims

    @staticmethod
    def _check_current(claims: PluginClaims, current_gen: CurrentGen) -> None:
        gen = current_gen(claims.plugin_id)
        if gen is None:
            raise TokenError("unknown_plugin", "the token's plugin is not registered")
        if claims.gen != gen:
            raise TokenError("revoked", "the token was revoked (its generation is superseded)")

    async def verify_assertion(self, token: str, audience: str) -> AssertionClaims:
        claims = await self._decode(token, ASSERTION_TYP, audience)
        if int(claims["exp"]) - int(claims["iat"]) > MAX_ASSERTION_TTL:
            raise TokenError("expired", "assertions live at most 60 seconds")
        fields = {k: claims.get(k) for k in ("method", "path", "rid")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise TokenError("missing_claim", "the assertion lacks method, path or rid")
        return AssertionClaims(
            caller=claims["sub"],
            audience=audience,
            method=str(fields["method"]),
            path=str(fields["path"]),
            request_id=str(fields["rid"]),
            jti=claims["jti"],
            expires_at=int(claims["exp"]),
        )


class Generations(Protocol):
    """What `verify_current` needs of `vivified.registry.store.snapshot.SnapshotHolder`."""

    @property
    def current(self) -> Any: ...  # a Snapshot: `plugin_gen(plugin_id)`

    async def confirm(self) -> Any: ...  # the Snapshot a refusal may stand on


async def verify_current(tokens: TokenService, snapshots: Generations, token: str) -> PluginClaims:
    """A plugin token verified against the current token generations; raises TokenError.

    A refusal the snapshot may be behind on (`BEHIND_CODES`) is confirmed first: when the
    registry has changed since the snapshot was loaded, the token is checked again on a fresh
    one, so a plugin registered or given a new token through another process is not refused by
    this one before the change notice arrives (`vivified.registry.store.revision`)."""
    snap = snapshots.current
    claims = tokens.verify_plugin_token_cached(token, snap.plugin_gen)
    if claims is not None:
        return claims
    try:
        return await tokens.verify_plugin_token(token, snap.plugin_gen)
    except TokenError as exc:
        if exc.code not in BEHIND_CODES:
            raise
        fresh = await snapshots.confirm()
        if fresh is snap:
            raise
    return await tokens.verify_plugin_token(token, fresh.plugin_gen)
