"""Failed Admin Console sign-ins per client address, kept in the registry.

A client that failed `LIMIT` times within `WINDOW` seconds waits until the oldest of those
failures leaves the window, even with the right token. The failures live in the database, not
in a process: every gateway worker and replica on the registry counts the same ones, so N
processes do not allow N times the attempts. Times are the wall clock (replicas share it).
Rows older than the window are deleted at every failure, so the table holds at most what one
window's failures wrote.
"""

from __future__ import annotations

import time

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vivified.registry.store.tables import SignInFailure

LIMIT = 5
WINDOW = 60.0
MAX_CLIENT = 64  # the column's length: an address is shorter; anything longer is cut


def _client(address: str) -> str:
    return address[:MAX_CLIENT]


async def retry_after(
    sessions: async_sessionmaker[AsyncSession], client: str, now: float | None = None
) -> int:
    """Whole seconds until `client` may try again; 0: now."""
    now = time.time() if now is None else now
    async with sessions() as s:
        recent = (
            (
                await s.execute(
                    select(SignInFailure.at)
                    .where(col(SignInFailure.client) == _client(client))
                    .where(col(SignInFailure.at) > now - WINDOW)
                    .order_by(col(SignInFailure.at).desc())
                    .limit(LIMIT)
                )
            )
            .scalars()
            .all()
        )
    if len(recent) < LIMIT:
        return 0
    return max(1, int(min(recent) + WINDOW - now) + 1)


async def failed(
    sessions: async_sessionmaker[AsyncSession], client: str, now: float | None = None
) -> None:
    """Count one failed sign-in of `client`, and forget every failure older than the window."""
    now = time.time() if now is None else now
    async with sessions() as s, s.begin():
        s.add(SignInFailure(client=_client(client), at=now))
        await s.execute(delete(SignInFailure).where(col(SignInFailure.at) <= now - WINDOW))
