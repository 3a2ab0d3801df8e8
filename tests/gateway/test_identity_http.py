"""Token attacks over real HTTP, and tokens surviving a gateway restart."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from support.manifests import simple
from support.procs import CoreProcess, register, registration_token


@pytest.fixture(scope="module")
def victim(gateway: CoreProcess) -> dict[str, str]:
    with httpx.Client(base_url=gateway.url, trust_env=False) as c:
        r = register(c, simple("victim"), registration_token(c))
        assert r.status_code == 201
        token = r.json()["token"]
        jwks = c.get("/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(token)["kid"]
    x = next(k["x"] for k in jwks["keys"] if k["kid"] == kid)
    return {"token": token, "kid": kid, "x": x}


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    c: dict[str, object] = {
        "iss": "vivified-core",
        "aud": "vivified",
        "sub": "victim",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "gen": 1,
    }
    c.update(over)
    return c


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_pub(v: dict[str, str]) -> bytes:
    return base64.urlsafe_b64decode(v["x"] + "=" * (-len(v["x"]) % 4))


def alg_none(v: dict[str, str]) -> str:
    head = _b64(b'{"alg":"none","typ":"vivified-plugin+jwt","kid":"' + v["kid"].encode() + b'"}')
    body = _b64(jwt.utils.force_bytes(jwt.api_jws.json.dumps(_claims())))  # type: ignore[attr-defined]
    return f"{head}.{body}."


def hs256_with_public_key(v: dict[str, str]) -> str:
    return jwt.encode(
        _claims(),
        _raw_pub(v),
        algorithm="HS256",
        headers={"kid": v["kid"], "typ": "vivified-plugin+jwt"},
    )


def rs256(v: dict[str, str]) -> str:
    key = generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(
        _claims(), key, algorithm="RS256", headers={"kid": v["kid"], "typ": "vivified-plugin+jwt"}
    )


def foreign_ed25519_same_kid(v: dict[str, str]) -> str:
    return jwt.encode(
        _claims(),
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": v["kid"], "typ": "vivified-plugin+jwt"},
    )


def unknown_kid(v: dict[str, str]) -> str:
    return jwt.encode(
        _claims(),
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": "nope", "typ": "vivified-plugin+jwt"},
    )


def jku_header(v: dict[str, str]) -> str:
    return jwt.encode(
        _claims(),
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": v["kid"], "jku": "https://evil.example/jwks.json"},
    )


def tampered_payload(v: dict[str, str]) -> str:
    head, _body, sig = v["token"].split(".")
    return f"{head}.{_b64(jwt.api_jws.json.dumps(_claims(sub='admin')).encode())}.{sig}"  # type: ignore[attr-defined]


def oversized(v: dict[str, str]) -> str:
    return v["token"] + "A" * 9000


ATTACKS: list[tuple[str, Callable[[dict[str, str]], str], set[str]]] = [
    ("alg-none", alg_none, {"bad_algorithm", "malformed_token"}),
    ("hs256-public-key", hs256_with_public_key, {"bad_algorithm"}),
    ("rs256", rs256, {"bad_algorithm"}),
    ("forged-signature", foreign_ed25519_same_kid, {"bad_signature"}),
    ("unknown-kid", unknown_kid, {"unknown_key"}),
    ("jku-header", jku_header, {"forbidden_header"}),
    ("tampered-payload", tampered_payload, {"bad_signature"}),
    ("over-8kib", oversized, {"token_too_large"}),
]


@pytest.mark.parametrize(("make", "reasons"), [pytest.param(m, r, id=i) for i, m, r in ATTACKS])
def test_forged_tokens_are_refused(
    gateway: CoreProcess,
    victim: dict[str, str],
    make: Callable[[dict[str, str]], str],
    reasons: set[str],
) -> None:
    with httpx.Client(base_url=gateway.url, trust_env=False) as c:
        r = c.get("/plugins/victim", headers={"Authorization": f"Bearer {make(victim)}"})
    assert r.status_code == 401, r.text
    assert r.json()["reason"] in reasons


def test_two_authorization_headers_are_401(gateway: CoreProcess, victim: dict[str, str]) -> None:
    headers = [("Authorization", f"Bearer {victim['token']}")] * 2
    with httpx.Client(base_url=gateway.url, trust_env=False) as c:
        r = c.get("/plugins/victim", headers=headers)
    assert r.status_code == 401
    assert r.json()["reason"] == "duplicate_authorization"


def test_token_in_query_string_is_401(gateway: CoreProcess, victim: dict[str, str]) -> None:
    with httpx.Client(base_url=gateway.url, trust_env=False) as c:
        r = c.get(
            "/plugins/victim",
            params={"access_token": victim["token"]},
            headers={"Authorization": f"Bearer {victim['token']}"},
        )
    assert r.status_code == 401
    assert r.json()["reason"] == "token_in_query"


def test_valid_token_is_accepted(gateway: CoreProcess, victim: dict[str, str]) -> None:
    with httpx.Client(base_url=gateway.url, trust_env=False) as c:
        r = c.get("/plugins/victim", headers={"Authorization": f"Bearer {victim['token']}"})
    assert r.status_code == 200


def test_restart_on_same_data_dir_keeps_tokens_valid(tmp_path: Path) -> None:
    gw = CoreProcess("gateway", tmp_path).start()
    try:
        with httpx.Client(base_url=gw.url, trust_env=False) as c:
            token = register(c, simple("survivor"), registration_token(c)).json()["token"]
        gw.restart()
        with httpx.Client(base_url=gw.url, trust_env=False) as c:
            r = c.get("/plugins/survivor", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
    finally:
        gw.stop()
