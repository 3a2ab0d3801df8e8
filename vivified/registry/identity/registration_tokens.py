"""Admin-issued registration tokens: created hashed, checked, consumed atomically."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vivified.registry.identity.secrets import hash_secret, new_secret, secrets_equal
from vivified.registry.store.tables import RegistrationToken

REGISTRATION_TOKEN_PREFIX = "vvr_"  # noqa: S105 (a prefix, not a secret)
MAX_USES = 10_000
MAX_TTL = 90 * 24 * 3600


@dataclass(frozen=True)
class IssuedRegistrationToken:
    id: str
    token: str
    plugin_id: str | None
    uses: int
    expires_at: float


async def create_registration_token(
    sessions: async_sessionmaker[AsyncSession],
    *,
    plugin_id: str | None,
    uses: int,
    ttl_seconds: float,
    created_by: str,
) -> IssuedRegistrationToken:
    """Store a new token (only its hash) and return its text, shown this once."""
    token, digest = new_secret(REGISTRATION_TOKEN_PREFIX)
    now = time.time()
    row = RegistrationToken(
        id=uuid.uuid4().hex,
        token_hash=digest,
        plugin_id=plugin_id,
        uses_left=uses,
        expires_at=now + ttl_seconds,
        created_by=created_by,
        created_at=now,
    )
    async with sessions() as s, s.begin():
        s.add(row)
    return IssuedRegistrationToken(row.id, token, plugin_id, uses, row.expires_at)


async def find_usable(
    sessions: async_sessionmaker[AsyncSession], token: str
) -> RegistrationToken | None:
    """The token's row when it exists, is not revoked or expired and has uses left."""
    digest = hash_secret(token)
    async with sessions() as s:
        row = (
            await s.execute(select(RegistrationToken).where(RegistrationToken.token_hash == digest))
        ).scalar_one_or_none()
    if row is None or not secrets_equal(row.token_hash, digest):
        return None
    if row.revoked or row.uses_left <= 0 or row.expires_at <= time.time():
        return None
    return row


async def consume(session: AsyncSession, token_id: str) -> bool:
    """Take one use inside the caller's transaction; False when none is left any more."""
    result = await session.execute(
        update(RegistrationToken)
        .where(
            col(RegistrationToken.id) == token_id,
            col(RegistrationToken.uses_left) > 0,
            col(RegistrationToken.revoked).is_(False),
            col(RegistrationToken.expires_at) > time.time(),
        )
        .values(uses_left=RegistrationToken.uses_left - 1)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def revoke_registration_token(
    sessions: async_sessionmaker[AsyncSession], token_id: str
) -> bool:
    async with sessions() as s, s.begin():
        row = await s.get(RegistrationToken, token_id)
        if row is None:
            return False
        row.revoked = True
    return True


async def list_registration_tokens(
    sessions: async_sessionmaker[AsyncSession],
) -> list[dict[str, object]]:
    """Metadata of every token; never the token text or its hash."""
    async with sessions() as s:
        rows = (
            await s.execute(select(RegistrationToken).order_by(col(RegistrationToken.created_at)))
        ).scalars()
        return [
            {
                "id": r.id,
                "plugin_id": r.plugin_id,
                "uses_left": r.uses_left,
                "expires_at": r.expires_at,
                "revoked": r.revoked,
                "created_by": r.created_by,
                "created_at": r.created_at,
            }
            for r in rows
        ]
