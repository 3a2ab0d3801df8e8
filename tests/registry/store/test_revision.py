"""The registry's revision (SQLite and PostgreSQL): every change raises it, a snapshot carries
the value it was loaded at, and `confirm` reloads only when the registry is ahead of it."""

from __future__ import annotations

import time

from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.registry.store import revision
from vivified.registry.store.snapshot import SnapshotHolder
from vivified.registry.store.tables import Plugin, RegistryRevision

Sessions = async_sessionmaker[AsyncSession]


async def _add_plugin(sessions: Sessions, pid: str, status: str = "registered") -> None:
    now = time.time()
    async with sessions() as s, s.begin():
        s.add(
            Plugin(
                id=pid,
                name=pid,
                version="1.0.0",
                manifest={"id": pid},
                status=status,
                created_at=now,
                updated_at=now,
            )
        )


async def test_every_change_raises_the_revision_and_the_snapshot_carries_it(
    sessions: Sessions,
) -> None:
    assert await revision.read(sessions) == 0  # the migration's row
    holder = SnapshotHolder(sessions)
    assert (await holder.reload()).revision == 0
    await _add_plugin(sessions, "alpha")
    snap = await holder.changed("plugins")
    assert (await revision.read(sessions), snap.revision) == (1, 1)
    assert "alpha" in snap.plugins
    await holder.changed("grants")
    assert holder.current.revision == 2


async def test_confirm_reloads_only_when_the_registry_is_ahead(sessions: Sessions) -> None:
    here, there = SnapshotHolder(sessions), SnapshotHolder(sessions)  # two processes
    await _add_plugin(sessions, "alpha")
    await there.changed("plugins")
    await here.reload()
    before = here.current
    assert await here.confirm() is before  # nothing newer: the same snapshot, no reload
    async with sessions() as s, s.begin():
        await s.execute(update(Plugin).where(Plugin.id == "alpha").values(status="active"))
    assert await here.confirm() is before  # committed, but its writer has not answered yet
    await there.changed("plugins")  # ... now it has (no notice reaches `here`)
    fresh = await here.confirm()
    assert fresh is not before
    assert fresh.plugins["alpha"].active
    assert fresh.revision == await revision.read(sessions)
    assert await here.confirm() is fresh


async def test_a_registry_it_cannot_read_leaves_the_refusal_standing(sessions: Sessions) -> None:
    holder = SnapshotHolder(sessions)
    await holder.reload()
    before = holder.current
    async with sessions() as s, s.begin():
        await s.execute(text("DROP TABLE registry_revision"))
    assert await holder.confirm() is before


async def test_a_lost_revision_row_is_written_again_by_the_next_change(sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        await s.execute(delete(RegistryRevision))
    assert await revision.read(sessions) == 0
    holder = SnapshotHolder(sessions)
    assert (await holder.changed("plugins")).revision == 1
    await holder.changed("plugins")
    assert await revision.read(sessions) == 2
