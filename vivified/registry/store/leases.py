"""Replica leases in the registry: one holder per named piece of work, handed over on expiry."""

from __future__ import annotations

import time

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from vivified.registry.store.tables import Lease


async def acquire(
    sessions: async_sessionmaker[AsyncSession], name: str, holder: str, ttl: float
) -> bool:
    """Take or renew the lease `name` for `holder`; False while another holder's is live."""
    now = time.time()
    async with sessions() as s, s.begin():
        result = await s.execute(
            update(Lease)
            .where(col(Lease.name) == name)
            .where((col(Lease.holder) == holder) | (col(Lease.expires_at) < now))
            .values(holder=holder, expires_at=now + ttl)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            return True
    try:
        async with sessions() as s, s.begin():
            await s.execute(insert(Lease).values(name=name, holder=holder, expires_at=now + ttl))
    except IntegrityError:
        return False  # another replica created it first
    return True


async def holds(session: AsyncSession, name: str, holder: str) -> bool:
    """Whether `holder` still holds the live lease `name` (inside the caller's transaction)."""
    row = await session.get(Lease, name)
    return row is not None and row.holder == holder and row.expires_at >= time.time()


async def release(sessions: async_sessionmaker[AsyncSession], holder: str) -> None:
    """Give up every lease of `holder` (clean shutdown hands work over at once)."""
    async with sessions() as s, s.begin():
        await s.execute(delete(Lease).where(col(Lease.holder) == holder))


async def holders(sessions: async_sessionmaker[AsyncSession], prefix: str) -> dict[str, str]:
    """Live leases whose name starts with `prefix`: name → holder."""
    now = time.time()
    async with sessions() as s:
        rows = (
            await s.execute(
                Lease.__table__.select().where(  # type: ignore[attr-defined]
                    col(Lease.name).startswith(prefix), col(Lease.expires_at) >= now
                )
            )
        ).all()
    return {r.name: r.holder for r in rows}
