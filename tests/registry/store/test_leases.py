"""Replica leases on SQLite and PostgreSQL: one live holder, hand-over on expiry or release."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.registry.store import leases


async def test_one_holder_at_a_time_and_hand_over(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    won = await asyncio.gather(*(leases.acquire(sessions, "health:p", r, 30) for r in "abcd"))
    assert sum(won) == 1
    holder = "abcd"[won.index(True)]
    other = next(r for r in "abcd" if r != holder)
    assert await leases.holders(sessions, "health:") == {"health:p": holder}
    async with sessions() as s:
        assert await leases.holds(s, "health:p", holder)
        assert not await leases.holds(s, "health:p", other)
    await leases.release(sessions, holder)
    assert await leases.acquire(sessions, "health:p", other, 0.2)
    assert not await leases.acquire(sessions, "health:p", holder, 30)
    await asyncio.sleep(0.3)  # part of the test: the 0.2 s lease expires
    async with sessions() as s:
        assert not await leases.holds(s, "health:p", other)  # expired: no longer held
    assert await leases.acquire(sessions, "health:p", holder, 30)
