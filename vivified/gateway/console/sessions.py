"""Console sessions stored in the registry, so that every gateway replica accepts them.

The cookie carries a random 256-bit session id; the registry keeps only its SHA-256, with
the admin, the admin token used to sign in (verified again on every request), the CSRF
secret and the created / last-seen times that the idle timeout and the lifetime bound.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from vivified.registry.identity.admins import AdminPrincipal
from vivified.registry.store.tables import ConsoleSession

COOKIE = "vivified_console"
SESSION_ID_BYTES = 32  # 256 bits
MAX_COOKIE_LENGTH = 128


@dataclass(frozen=True)
class Lifetimes:
    idle: float
    absolute: float

    @property
    def touch_every(self) -> float:
        """How stale `last_seen` may get before a request writes it again."""
        return min(10.0, self.idle / 4)


def session_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def open_session(
    sessions: async_sessionmaker[AsyncSession], principal: AdminPrincipal, limits: Lifetimes
) -> tuple[str, ConsoleSession]:
    """A new session for `principal`; returns the cookie value (shown nowhere else)."""
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    now = time.time()
    row = ConsoleSession(
        id=session_key(session_id),
        admin_user_id=principal.user_id,
        token_id=principal.token_id,
        csrf_secret=secrets.token_urlsafe(32),
        created_at=now,
        last_seen=now,
    )
    async with sessions() as s, s.begin():
        # Sweep sessions that can no longer be used, so the table does not grow.
        await s.execute(
            delete(ConsoleSession).where(
                or_(
                    col(ConsoleSession.last_seen) < now - limits.idle,
                    col(ConsoleSession.created_at) < now - limits.absolute,
                )
            )
        )
        s.add(row)
    return session_id, row


async def find_session(
    sessions: async_sessionmaker[AsyncSession], session_id: str, limits: Lifetimes
) -> ConsoleSession | None:
    """The live session behind a cookie value; an idle or too old one is deleted and None."""
    if not session_id or len(session_id) > MAX_COOKIE_LENGTH:
        return None
    key = session_key(session_id)
    now = time.time()
    async with sessions() as s, s.begin():
        row = await s.get(ConsoleSession, key)
        if row is None:
            return None
        if now - row.last_seen > limits.idle or now - row.created_at > limits.absolute:
            await s.delete(row)
            return None
        if now - row.last_seen > limits.touch_every:
            row.last_seen = now
    return row


async def close_session(sessions: async_sessionmaker[AsyncSession], key: str) -> None:
    """Delete a session by its stored key (sign-out, or its admin token is no longer valid)."""
    async with sessions() as s, s.begin():
        await s.execute(delete(ConsoleSession).where(col(ConsoleSession.id) == key))
