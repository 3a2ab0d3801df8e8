"""Sign-ins waiting for the provider's callback, in the registry (any replica finishes them).

The browser holds a random value in the `vivified_oidc` cookie (HttpOnly, SameSite=Lax, a
few minutes); the registry keeps its SHA-256 with the `state`, `nonce` and PKCE code
verifier. The callback takes the row out: a pending sign-in is used once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from vivified.registry.store.tables import OidcPendingLogin

COOKIE = "vivified_oidc"
LIFETIME = 600.0  # seconds a sign-in may spend at the provider
MAX_COOKIE_LENGTH = 128


@dataclass(frozen=True)
class Pending:
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


async def remember(sessions: async_sessionmaker[AsyncSession], pending: Pending) -> str:
    """Store a pending sign-in; returns the cookie value (shown nowhere else)."""
    cookie = secrets.token_urlsafe(32)
    now = time.time()
    async with sessions() as s, s.begin():
        # Sweep abandoned sign-ins, so the table does not grow.
        await s.execute(delete(OidcPendingLogin).where(col(OidcPendingLogin.expires_at) < now))
        s.add(
            OidcPendingLogin(
                id=_key(cookie),
                state=pending.state,
                nonce=pending.nonce,
                code_verifier=pending.code_verifier,
                redirect_uri=pending.redirect_uri,
                created_at=now,
                expires_at=now + LIFETIME,
            )
        )
    return cookie


async def take(sessions: async_sessionmaker[AsyncSession], cookie: str) -> Pending | None:
    """The pending sign-in behind `cookie`, removed (single use); None if unknown or expired."""
    if not cookie or len(cookie) > MAX_COOKIE_LENGTH:
        return None
    async with sessions() as s, s.begin():
        row = await s.get(OidcPendingLogin, _key(cookie))
        if row is None:
            return None
        # Two callbacks racing with one cookie: only the one whose DELETE removed the row wins.
        gone = await s.execute(delete(OidcPendingLogin).where(col(OidcPendingLogin.id) == row.id))
        if getattr(gone, "rowcount", 0) != 1:
            return None
    if row.expires_at < time.time():
        return None
    return Pending(row.state, row.nonce, row.code_verifier, row.redirect_uri)
