"""The ID-token and access-token validator against the real provider's JWKS, with tokens we
craft: signed by a key the provider publishes (pushed to it, never used by it to sign), by a
key it does not publish, or not signed at all."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authlib.jose import JsonWebKey, JsonWebToken
from oidc.idp import IdentityProvider

from vivified.gateway.oidc.jwks import KeySet
from vivified.gateway.oidc.provider import ASYMMETRIC_ALGS
from vivified.gateway.oidc.validation import TokenRefused, Validator

CLIENT = "console-client"
NONCE = "the-nonce-of-this-sign-in"
AUDIENCE = "https://admin.vivified.test"


@pytest.fixture(scope="module")
def published(idp: IdentityProvider) -> Iterator[Any]:
    """A key pair whose public half the provider publishes in its JWKS."""
    key = JsonWebKey.generate_key(
        "RSA", 2048, is_private=True, options={"kid": "t-" + secrets.token_hex(4)}
    )
    idp.rotate(key.as_dict(is_private=True), append=True)
    return key


def _keyset(idp: IdentityProvider, *, interval: float = 30.0) -> KeySet:
    async def fetch() -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False) as c:
            body: dict[str, Any] = (await c.get(idp.issuer + "/jwks")).json()
            return body

    return KeySet(fetch, min_refetch_interval=interval)


async def _validator(idp: IdentityProvider) -> Validator:
    keys = _keyset(idp)
    await keys.load()
    return Validator(idp.issuer, keys, ASYMMETRIC_ALGS)


def _claims(idp: IdentityProvider, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": idp.issuer,
        "sub": "alice",
        "aud": CLIENT,
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _sign(key: Any, claims: dict[str, Any], **header: Any) -> str:
    head = {"alg": "RS256", "kid": key.as_dict()["kid"], **header}
    token: bytes = JsonWebToken(["RS256"]).encode(head, claims, key)
    return token.decode()


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


async def test_a_good_id_token_passes(idp: IdentityProvider, published: Any) -> None:
    v = await _validator(idp)
    claims = await v.id_token(_sign(published, _claims(idp)), client_id=CLIENT, nonce=NONCE)
    assert claims["sub"] == "alice"


def _unsigned(idp: IdentityProvider, published: Any) -> str:
    head = {"alg": "none", "kid": published.as_dict()["kid"]}
    return f"{_b64(head)}.{_b64(_claims(idp))}."


def _hs256(idp: IdentityProvider, published: Any) -> str:
    # The classic confusion: HMAC "signed" with the provider's public key as the secret.
    secret = json.dumps(published.as_dict()).encode()
    head = {"alg": "HS256", "kid": published.as_dict()["kid"]}
    oct_key = JsonWebKey.import_key(secret, {"kty": "oct"})
    token: bytes = JsonWebToken(["HS256"]).encode(head, _claims(idp), oct_key)
    return token.decode()


def _foreign_key(idp: IdentityProvider, published: Any) -> str:
    stranger = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "stranger"})
    return _sign(stranger, _claims(idp))


def _foreign_key_known_kid(idp: IdentityProvider, published: Any) -> str:
    # A key the provider does not publish, presented under the kid of one it does.
    stranger = JsonWebKey.generate_key("RSA", 2048, is_private=True)
    return _sign(stranger, _claims(idp), kid=published.as_dict()["kid"])


CASES = [
    pytest.param(
        lambda i, k: _sign(k, _claims(i, nonce="another")), "wrong_nonce", id="wrong-nonce"
    ),
    pytest.param(lambda i, k: _sign(k, _claims(i, nonce=None)), "wrong_nonce", id="no-nonce"),
    pytest.param(
        lambda i, k: _sign(k, _claims(i, aud="other-client")), "wrong_audience", id="other-audience"
    ),
    pytest.param(
        lambda i, k: _sign(k, _claims(i, aud=[CLIENT, "other"], azp="other")),
        "wrong_azp",
        id="azp-of-another-client",
    ),
    pytest.param(
        lambda i, k: _sign(k, _claims(i, aud=[CLIENT, "other"])), "wrong_azp", id="many-aud-no-azp"
    ),
    pytest.param(
        lambda i, k: _sign(k, _claims(i, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)),
        "token_expired",
        id="expired",
    ),
    pytest.param(
        lambda i, k: _sign(k, _claims(i, iat=int(time.time()) + 3600, exp=int(time.time()) + 7200)),
        "bad_iat",
        id="issued-in-the-future",
    ),
    pytest.param(
        lambda i, k: _sign(k, _claims(i, iss="https://evil.test")),
        "wrong_issuer",
        id="other-issuer",
    ),
    pytest.param(_foreign_key, "unknown_key", id="key-not-in-jwks"),
    pytest.param(_foreign_key_known_kid, "bad_signature", id="forged-under-a-known-kid"),
    pytest.param(_unsigned, "bad_algorithm", id="alg-none"),
    pytest.param(_hs256, "bad_algorithm", id="alg-hs256-with-public-key"),
    pytest.param(
        lambda i, k: _sign(k, _claims(i), jku="https://evil.test/jwks"),
        "bad_header",
        id="jku-header",
    ),
    pytest.param(lambda i, k: "not.a-jwt", "malformed_token", id="garbage"),
]


@pytest.mark.parametrize(("make", "code"), CASES)
async def test_id_token_refusals(
    idp: IdentityProvider, published: Any, make: Any, code: str
) -> None:
    v = await _validator(idp)
    with pytest.raises(TokenRefused) as refused:
        await v.id_token(make(idp, published), client_id=CLIENT, nonce=NONCE)
    assert refused.value.code == code
    assert "eyJ" not in refused.value.message  # never the token


async def test_access_token_needs_the_api_audience(idp: IdentityProvider, published: Any) -> None:
    v = await _validator(idp)
    good = _sign(published, _claims(idp, aud=AUDIENCE, nonce=None))
    assert (await v.access_token(good, audience=AUDIENCE))["sub"] == "alice"
    other = _sign(published, _claims(idp, aud="https://other-api.test", nonce=None))
    with pytest.raises(TokenRefused) as refused:
        await v.access_token(other, audience=AUDIENCE)
    assert refused.value.code == "wrong_audience"


async def test_unknown_kid_refetches_the_jwks_once_then_is_rate_limited(
    idp: IdentityProvider,
) -> None:
    keys = _keyset(idp, interval=3600)
    await keys.load()
    v = Validator(idp.issuer, keys, ASYMMETRIC_ALGS)
    fresh = JsonWebKey.generate_key(
        "RSA", 2048, is_private=True, options={"kid": "f-" + secrets.token_hex(4)}
    )
    idp.rotate(fresh.as_dict(is_private=True), append=True)  # published after our first read
    assert keys.fetches == 1
    claims = await v.id_token(_sign(fresh, _claims(idp)), client_id=CLIENT, nonce=NONCE)
    assert claims["sub"] == "alice"
    assert keys.fetches == 2  # the unknown kid fetched the JWKS again
    for _ in range(5):  # made-up kids do not make us hammer the provider
        with pytest.raises(TokenRefused) as refused:
            await v.id_token(_foreign_key(idp, fresh), client_id=CLIENT, nonce=NONCE)
        assert refused.value.code == "unknown_key"
    assert keys.fetches == 2
