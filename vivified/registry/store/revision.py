"""The registry's revision: how a process tells its snapshot is behind the registry.

Every process decides on an in-memory snapshot, reloaded when a change notice arrives on NATS,
so for a few milliseconds after a change another process may still decide on the picture
before it. Allowing on a stale picture is what the change notice bounds (a revocation reaches
every replica within a second). Refusing on one is worse for the caller who made the change:
an admin enables a plugin and the plugin's first call, served by another process, is refused
as not active.

So every committed change the snapshots carry raises this one counter before its writer
answers (`SnapshotHolder.changed`), and each snapshot remembers the value it was loaded at,
read before anything else it holds. A refusal that the snapshot's picture decided reads the
counter first (`SnapshotHolder.confirm`): when the registry is ahead, the process reloads and
decides again. Whoever saw a change answered therefore never sees it refused by a process
that has not heard of it yet. What is allowed reads nothing: the hot path stays off the
database, and a refusal costs one primary-key read more than its audit record's write.
"""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.registry.store.tables import RegistryRevision

_TABLE = RegistryRevision.__table__  # type: ignore[attr-defined]


async def current(session: AsyncSession) -> int:
    """The registry's revision now (0 before the first change)."""
    value = (await session.execute(select(_TABLE.c.value).where(_TABLE.c.id == 1))).scalar()
    return int(value or 0)


async def read(sessions: async_sessionmaker[AsyncSession]) -> int:
    """`current` in a session of its own."""
    async with sessions() as s:
        return await current(s)


async def bump(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Raise the revision by one after a committed change (the row again if it was lost: the
    migration inserts it)."""
    async with sessions() as s, s.begin():
        done = await s.execute(
            update(_TABLE).where(_TABLE.c.id == 1).values(value=_TABLE.c.value + 1)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            await s.execute(insert(_TABLE).values(id=1, value=1))
