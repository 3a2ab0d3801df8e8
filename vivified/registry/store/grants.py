"""Admin grants (caller may use target on the operator lane) and contract-alias choices."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vivified.registry.store.tables import ContractChoice, Grant


def grant_json(row: Grant) -> dict[str, Any]:
    return {
        "id": row.id,
        "caller": row.caller,
        "target": row.target,
        "methods": list(row.methods),
        "paths": list(row.paths),
        "created_by": row.created_by,
        "created_at": row.created_at,
    }


async def create_grant(
    sessions: async_sessionmaker[AsyncSession],
    *,
    caller: str,
    target: str,
    methods: Sequence[str],
    paths: Sequence[str],
    created_by: str,
) -> dict[str, Any]:
    row = Grant(
        id="g_" + uuid.uuid4().hex[:20],
        caller=caller,
        target=target,
        methods=sorted({m.upper() for m in methods}),
        paths=list(dict.fromkeys(paths)),
        created_by=created_by,
        created_at=time.time(),
    )
    async with sessions() as s, s.begin():
        s.add(row)
    return grant_json(row)


async def list_grants(
    sessions: async_sessionmaker[AsyncSession],
    *,
    caller: str | None = None,
    target: str | None = None,
) -> list[dict[str, Any]]:
    stmt = select(Grant).order_by(col(Grant.created_at))
    if caller is not None:
        stmt = stmt.where(col(Grant.caller) == caller)
    if target is not None:
        stmt = stmt.where(col(Grant.target) == target)
    async with sessions() as s:
        return [grant_json(r) for r in (await s.execute(stmt)).scalars().all()]


async def delete_grant(sessions: async_sessionmaker[AsyncSession], grant_id: str) -> bool:
    async with sessions() as s, s.begin():
        row = await s.get(Grant, grant_id)
        if row is None:
            return False
        await s.delete(row)
    return True


async def set_contract_choice(
    sessions: async_sessionmaker[AsyncSession], contract: str, plugin_id: str
) -> None:
    async with sessions() as s, s.begin():
        row = await s.get(ContractChoice, contract)
        if row is None:
            s.add(ContractChoice(contract=contract, plugin_id=plugin_id))
        else:
            row.plugin_id = plugin_id


async def clear_contract_choice(sessions: async_sessionmaker[AsyncSession], contract: str) -> bool:
    async with sessions() as s, s.begin():
        row = await s.get(ContractChoice, contract)
        if row is None:
            return False
        await s.delete(row)
    return True
