"""Plugin tokens: what is issued, and every forgery the verifier must refuse."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.registry.identity import keys as keys_module
from vivified.registry.identity.keys import KeyStore
from vivified.registry.identity.tokens import (
    ASSERTION_TYP,
    AUDIENCE,
    PLUGIN_TYP,
    TokenError,
    TokenService,
)

ISSUER = "vivified-core"
GENS = {"alpha": 3}


def current_gen(pid: str) -> int | None:
    return GENS.get(pid)


@pytest.fixture
async def keys(sessions: async_sessionmaker[AsyncSession]) -> KeyStore:
    store = KeyStore(sessions)
    await store.load(create=True)
    return store


@pytest.fixture
def service(keys: KeyStore) -> TokenService:
    return TokenService(keys, issuer=ISSUER, ttl=600)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def good_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alpha",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "j1",
        "gen": 3,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def signed(keys: KeyStore, claims: dict[str, Any], **headers: Any) -> str:
    hdr = {"typ": PLUGIN_TYP, "kid": keys.current_kid, **headers}
    hdr = {k: v for k, v in hdr.items() if v is not None}
    return jwt.encode(claims, keys.private_key(), algorithm="EdDSA", headers=hdr)


def unsigned(keys: KeyStore) -> str:
    header = {"alg": "none", "typ": PLUGIN_TYP, "kid": keys.current_kid}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(good_claims()).encode())}."


def hmac_with_public_key(keys: KeyStore) -> str:
    public = keys.public_key(keys.current_kid)
    assert public is not None
    secret = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    header = {"alg": "HS256", "typ": PLUGIN_TYP, "kid": keys.current_kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(good_claims()).encode())}"
    import hashlib
    import hmac

    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def foreign_key(keys: KeyStore) -> str:
    other = Ed25519PrivateKey.generate()
    hdr = {"typ": PLUGIN_TYP, "kid": keys.current_kid}
    return jwt.encode(good_claims(), other, algorithm="EdDSA", headers=hdr)


def tampered(keys: KeyStore) -> str:
    head, _payload, sig = signed(keys, good_claims()).split(".")
    return f"{head}.{b64(json.dumps(good_claims(sub='alpha', gen=99)).encode())}.{sig}"


Forge = Callable[[KeyStore], str]
ATTACKS: list[Any] = [
    pytest.param(unsigned, "bad_algorithm", id="alg-none"),
    pytest.param(hmac_with_public_key, "bad_algorithm", id="hs256-with-public-key"),
    pytest.param(
        lambda k: signed(k, good_claims(), kid="no-such-key"), "unknown_key", id="unknown-kid"
    ),
    pytest.param(lambda k: signed(k, good_claims(), kid=None), "unknown_key", id="no-kid"),
    pytest.param(
        lambda k: signed(k, good_claims(), jku="https://evil/jwks"), "forbidden_header", id="jku"
    ),
    pytest.param(
        lambda k: signed(k, good_claims(), x5u="https://evil/cert"), "forbidden_header", id="x5u"
    ),
    pytest.param(
        lambda k: signed(k, good_claims(), jwk={"kty": "OKP"}), "forbidden_header", id="jwk"
    ),
    pytest.param(lambda k: signed(k, good_claims(), x5c=["MIIB"]), "forbidden_header", id="x5c"),
    pytest.param(lambda k: signed(k, good_claims(), crit=["exp"]), "forbidden_header", id="crit"),
    pytest.param(lambda k: signed(k, good_claims(), typ="JWT"), "wrong_token_type", id="typ-jwt"),
    pytest.param(
        lambda k: signed(k, good_claims(), typ=ASSERTION_TYP),
        "wrong_token_type",
        id="typ-assertion",
    ),
    pytest.param(lambda k: signed(k, good_claims(exp=None)), "missing_claim", id="no-exp"),
    pytest.param(lambda k: signed(k, good_claims(jti=None)), "missing_claim", id="no-jti"),
    pytest.param(lambda k: signed(k, good_claims(gen=None)), "missing_claim", id="no-gen"),
    pytest.param(lambda k: signed(k, good_claims(gen="3")), "missing_claim", id="gen-string"),
    pytest.param(
        lambda k: signed(k, good_claims(exp=int(time.time()) - 120)), "expired", id="expired"
    ),
    pytest.param(
        lambda k: signed(k, good_claims(nbf=int(time.time()) + 120)),
        "not_yet_valid",
        id="future-nbf",
    ),
    pytest.param(
        lambda k: signed(k, good_claims(iss="someone-else")), "wrong_issuer", id="wrong-iss"
    ),
    pytest.param(lambda k: signed(k, good_claims(aud="other")), "wrong_audience", id="wrong-aud"),
    pytest.param(lambda k: signed(k, good_claims(gen=2)), "revoked", id="old-gen"),
    pytest.param(
        lambda k: signed(k, good_claims(sub="ghost")), "unknown_plugin", id="unknown-plugin"
    ),
    pytest.param(
        lambda k: signed(k, good_claims(pad="x" * 9000)), "token_too_large", id="over-8kib"
    ),
    pytest.param(foreign_key, "bad_signature", id="foreign-key"),
    pytest.param(tampered, "bad_signature", id="tampered-payload"),
    pytest.param(lambda k: "not.a.jwt", "malformed_token", id="garbage"),
    pytest.param(lambda k: "", "malformed_token", id="empty"),
]


async def test_issued_token_verifies_with_the_design_claims(
    service: TokenService, keys: KeyStore
) -> None:
    issued = service.issue_plugin_token("alpha", 3)
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "EdDSA", "typ": PLUGIN_TYP, "kid": keys.current_kid}
    body = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(body) == {"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "gen"}
    assert (body["sub"], body["aud"], body["iss"], body["gen"]) == ("alpha", AUDIENCE, ISSUER, 3)
    claims = await service.verify_plugin_token(issued.token, current_gen)
    assert (claims.plugin_id, claims.gen, claims.expires_at) == ("alpha", 3, issued.expires_at)
    assert issued.token not in repr(issued)


@pytest.mark.parametrize(("forge", "code"), ATTACKS)
async def test_forged_tokens_are_refused(
    service: TokenService, keys: KeyStore, forge: Forge, code: str
) -> None:
    token = forge(keys)
    with pytest.raises(TokenError) as err:
        await service.verify_plugin_token(token, current_gen)
    assert err.value.code == code
    assert service.verify_plugin_token_cached(token, current_gen) is None


async def test_leeway_accepts_small_clock_skew_only(service: TokenService, keys: KeyStore) -> None:
    skewed = signed(keys, good_claims(exp=int(time.time()) - 10))
    assert (await service.verify_plugin_token(skewed, current_gen)).plugin_id == "alpha"
    with pytest.raises(ValueError, match="leeway"):
        TokenService(keys, issuer=ISSUER, ttl=60, leeway=31)


async def test_cache_never_outlives_revocation(service: TokenService) -> None:
    gens = {"alpha": 3}
    token = service.issue_plugin_token("alpha", 3).token
    await service.verify_plugin_token(token, gens.get)
    assert service.verify_plugin_token_cached(token, gens.get) is not None
    gens["alpha"] = 4  # disable / re-register bumps the generation
    assert service.verify_plugin_token_cached(token, gens.get) is None
    with pytest.raises(TokenError) as err:
        await service.verify_plugin_token(token, gens.get)
    assert err.value.code == "revoked"
    del gens["alpha"]  # unregistered
    with pytest.raises(TokenError) as err:
        await service.verify_plugin_token(token, gens.get)
    assert err.value.code == "unknown_plugin"


async def test_cache_never_outlives_expiry(keys: KeyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    service = TokenService(keys, issuer=ISSUER, ttl=600, leeway=0)
    token = service.issue_plugin_token("alpha", 3).token
    await service.verify_plugin_token(token, current_gen)
    assert service.verify_plugin_token_cached(token, current_gen) is not None
    later = time.time() + 601
    monkeypatch.setattr(time, "time", lambda: later)  # the clock moves past `exp`
    assert service.verify_plugin_token_cached(token, current_gen) is None


async def test_rotation_keeps_old_tokens_valid_and_new_ones_use_the_new_key(
    service: TokenService,
    keys: KeyStore,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The key store's own clock (its re-read interval), moved by the test: no sleeping.
    clock = [time.monotonic()]
    monkeypatch.setattr(
        keys_module, "time", SimpleNamespace(time=time.time, monotonic=lambda: clock[0])
    )
    # a second process (another replica) that loaded the keys before the rotation
    other = KeyStore(sessions)
    await other.load(create=False)
    other_service = TokenService(other, issuer=ISSUER, ttl=600)
    old = service.issue_plugin_token("alpha", 3).token
    old_kid = keys.current_kid
    new_kid = await keys.rotate(publish_for=3600)
    assert new_kid != old_kid
    assert {k["kid"] for k in keys.jwks()["keys"]} == {old_kid, new_kid}
    fresh = TokenService(keys, issuer=ISSUER, ttl=600)
    assert (await fresh.verify_plugin_token(old, current_gen)).plugin_id == "alpha"
    new = fresh.issue_plugin_token("alpha", 3).token
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    # What the code guarantees today: the running store re-reads the keys when a token names
    # one it does not know, but at most once per REFRESH_MIN_INTERVAL (5 s) since its last
    # read; until then it refuses the new key's tokens and still signs with the old key.
    assert other.current_kid == old_kid
    with pytest.raises(TokenError) as refused:
        await other_service.verify_plugin_token(new, current_gen)
    assert refused.value.code == "unknown_key"
    assert other.current_kid == old_kid
    clock[0] += keys_module.REFRESH_MIN_INTERVAL
    assert (await other_service.verify_plugin_token(new, current_gen)).plugin_id == "alpha"
    assert other.current_kid == new_kid  # learnt on demand: it now signs with the new key
    assert {k["kid"] for k in other.jwks()["keys"]} == {old_kid, new_kid}
    assert (await other_service.verify_plugin_token(old, current_gen)).plugin_id == "alpha"


async def test_assertions_are_short_lived_and_audience_bound(service: TokenService) -> None:
    issued = service.issue_assertion(
        "alpha", "beta", method="GET", path="/api/x", request_id="r1", ttl=3600
    )
    assert issued.expires_at - int(time.time()) <= 60
    claims = await service.verify_assertion(issued.token, "beta")
    assert (claims.caller, claims.method, claims.path, claims.request_id) == (
        "alpha",
        "GET",
        "/api/x",
        "r1",
    )
    with pytest.raises(TokenError) as err:
        await service.verify_assertion(issued.token, "gamma")
    assert err.value.code == "wrong_audience"
    with pytest.raises(TokenError) as err:  # an assertion is not a plugin token
        await service.verify_plugin_token(issued.token, current_gen)
    assert err.value.code == "wrong_token_type"


@pytest.mark.parametrize(
    "path",
    [
        "/api/x",
        '/api/"quoted"',
        "/api/back\\slash",
        "/api/ümlaut/☃",
        "/api/\x01\x1f\x7f",
        "/api/😀",
    ],
    ids=["plain", "quotes", "backslash", "unicode", "control", "astral"],
)
async def test_an_assertion_payload_is_the_json_of_its_claims(
    service: TokenService, path: str
) -> None:
    # The payload is written from a template, not json.dumps: it must be the same bytes.
    issued = service.issue_assertion("alpha", "beta", method="PATCH", path=path, request_id="r-1")
    payload = issued.token.split(".")[1]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("ascii")
    claims = json.loads(raw)
    assert list(claims) == [
        "iss",
        "aud",
        "sub",
        "iat",
        "nbf",
        "exp",
        "jti",
        "method",
        "path",
        "rid",
    ]
    assert raw == json.dumps(claims, separators=(",", ":"))
    assert (claims["path"], claims["sub"], claims["aud"]) == (path, "alpha", "beta")
    verified = await service.verify_assertion(issued.token, "beta")
    assert verified.path == path


@pytest.mark.parametrize(
    "message", [b"", b"a.b", b"x" * 1000, "ü.é".encode()], ids=["empty", "short", "long", "utf8"]
)
async def test_the_signer_matches_openssl_byte_for_byte(keys: KeyStore, message: bytes) -> None:
    # Ed25519 is deterministic: libsodium and OpenSSL must give the very same signature, which
    # the published public key verifies.
    assert keys.sign(message) == keys.private_key().sign(message)
    public = keys.public_key(keys.current_kid)
    assert public is not None
    public.verify(keys.sign(message), message)  # raises InvalidSignature when wrong


async def test_the_signer_follows_rotation(keys: KeyStore) -> None:
    before = keys.sign(b"m")
    await keys.rotate(publish_for=60)
    assert keys.sign(b"m") != before
    assert keys.sign(b"m") == keys.private_key().sign(b"m")
