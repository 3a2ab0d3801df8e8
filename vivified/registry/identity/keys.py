"""Ed25519 signing keys, persisted in the registry and published as a JWK Set.

Every replica holds the keys in memory and signs with the newest unretired one. A rotation
(any replica, or the CLI) writes the registry; the others pick it up with `reload()`, which
the config layer runs on a change notice and on a safety-net timer. A retired key stays
published until `publish_until`: the rotation sets it past the expiry of the last token the
key can have signed, counting replicas that sign with it until they reload."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign, crypto_sign_BYTES, crypto_sign_seed_keypair
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vivified.registry.store.tables import SigningKey

log = logging.getLogger(__name__)
REFRESH_MIN_INTERVAL = 5.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    """The public JWK with its RFC 7638 thumbprint as `kid`."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = _b64(raw)
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = _b64(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}


@dataclass(frozen=True)
class _Key:
    kid: str
    public: Ed25519PublicKey
    private: Ed25519PrivateKey
    secret: bytes  # the same key in libsodium's form (seed + public key)
    jwk: dict[str, Any]
    created_at: float
    retired_at: float | None
    publish_until: float | None

    def published(self, now: float) -> bool:
        return self.publish_until is None or self.publish_until > now


def _new_row(now: float) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    jwk = public_jwk(private.public_key())
    # The private key is stored as PKCS#8 PEM: the registry database must be protected
    # (file permissions / database access); encryption at rest is the database's job.
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return SigningKey(kid=jwk["kid"], private_pem=pem, public_jwk=jwk, created_at=now)


class KeyStore:
    """Holds the signing key and every still-published public key; loaded from the registry."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._keys: dict[str, _Key] = {}
        self._current: str | None = None
        self._last_unknown_refresh = 0.0  # the last read that an unknown `kid` may not repeat

    async def load(self, *, create: bool = True) -> None:
        """Read every key; create the first one when there is none (and `create`)."""
        rows = await self._read()
        if not rows and create:
            try:
                async with self._sessions() as s, s.begin():
                    s.add(_new_row(time.time()))
            except IntegrityError:
                pass  # another process created it at the same moment: use theirs
            rows = await self._read()
        if not rows:
            raise RuntimeError("no signing key in the registry yet; start the gateway first")
        self._install(rows)
        self._last_unknown_refresh = time.monotonic()  # fresh from the registry

    async def _read(self) -> list[SigningKey]:
        # One order on every replica, so that they all publish the same JWK Set.
        stmt = select(SigningKey).order_by(col(SigningKey.created_at), col(SigningKey.kid))
        async with self._sessions() as s:
            return list((await s.execute(stmt)).scalars().all())

    async def reload(self) -> bool:
        """Read the keys again (after a rotation elsewhere); True when the signer changed."""
        before = self._current
        self._install(await self._read())
        if before is not None and self._current != before:
            log.info("signing with key %s (rotated elsewhere)", self._current)
        return self._current != before

    def _install(self, rows: list[SigningKey]) -> None:
        keys: dict[str, _Key] = {}
        for row in rows:
            known = self._keys.get(row.kid)
            if known is not None:  # a reload: only the retirement can have changed
                keys[row.kid] = dataclasses.replace(
                    known, retired_at=row.retired_at, publish_until=row.publish_until
                )
                continue
            private = serialization.load_pem_private_key(row.private_pem.encode(), password=None)
            assert isinstance(private, Ed25519PrivateKey)
            seed = private.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            keys[row.kid] = _Key(
                row.kid,
                private.public_key(),
                private,
                crypto_sign_seed_keypair(seed)[1],
                dict(row.public_jwk),
                row.created_at,
                row.retired_at,
                row.publish_until,
            )
        active = [k for k in keys.values() if k.retired_at is None]
        if not active:
            raise RuntimeError("every signing key is retired; run `vivified keys rotate`")
        self._keys = keys
        self._current = max(active, key=lambda k: (k.created_at, k.kid)).kid

    async def rotate(self, *, publish_for: float) -> str:
        """Start signing with a new key; the old one stays published for `publish_for` s."""
        now = time.time()
        row = _new_row(now)
        async with self._sessions() as s, s.begin():
            current = (
                (await s.execute(select(SigningKey).where(col(SigningKey.retired_at).is_(None))))
                .scalars()
                .all()
            )
            for old in current:
                old.retired_at = now
                old.publish_until = now + publish_for
            s.add(row)
        self._install(await self._read())
        return row.kid

    async def refresh_if_unknown(self, kid: str) -> bool:
        """Reload when a token names a key we don't know (a rotation this replica has not
        heard of yet), at most once per 5 s after the last such read (or `load`): made-up
        `kid`s cannot flood the database. The periodic `reload` does not count: it must not
        shut out the on-demand read of a key rotated since."""
        if kid in self._keys:
            return True
        if time.monotonic() - self._last_unknown_refresh < REFRESH_MIN_INTERVAL:
            return False
        self._last_unknown_refresh = time.monotonic()
        self._install(await self._read())
        return kid in self._keys

    @property
    def current_kid(self) -> str:
        if self._current is None:
            raise RuntimeError("KeyStore.load() has not run")
        return self._current

    def private_key(self) -> Ed25519PrivateKey:
        return self._keys[self.current_kid].private

    def sign(self, data: bytes) -> bytes:
        """The current key's Ed25519 signature of `data`. Signed with libsodium: once per
        operator-lane call and per event delivery, it costs 40 % less than OpenSSL's here;
        Ed25519 is deterministic, so the signature is the same bytes either way."""
        return crypto_sign(data, self._keys[self.current_kid].secret)[:crypto_sign_BYTES]

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        key = self._keys.get(kid)
        if key is None or not key.published(time.time()):
            return None
        return key.public

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        now = time.time()
        return {"keys": [dict(k.jwk) for k in self._keys.values() if k.published(now)]}
