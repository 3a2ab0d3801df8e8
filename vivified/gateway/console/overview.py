"""The overview: plugins by status and health, lane switches, the audit chain, denials."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, func, select
from starlette.responses import Response

from vivified.gateway.console.audit import chain_state, recent_denials
from vivified.gateway.console.context import Ctx, page
from vivified.gateway.console.plugins import waiting_sql
from vivified.registry.store.tables import Plugin


async def plugin_counts(ctx: Ctx, shown: int = 20) -> dict[str, Any]:
    """The overview's numbers, counted in SQL: by status, by health, and who waits (the first
    `shown` of them by id, and how many in all)."""
    status, health = col(Plugin.status), col(Plugin.health_state)
    async with ctx.core.sessions() as s:
        grouped = (
            await s.execute(select(status, health, func.count()).group_by(status, health))
        ).all()
        waiting = select(col(Plugin.id)).where(waiting_sql()).order_by(col(Plugin.id))
        first = (await s.execute(waiting.limit(shown))).scalars().all()
        count = len(first)
        if count == shown:
            counted = select(func.count()).select_from(Plugin).where(waiting_sql())
            count = (await s.execute(counted)).scalar_one()
    by_status: dict[str, int] = {}
    by_health: dict[str, int] = {}
    for st, hs, n in grouped:
        by_status[st] = by_status.get(st, 0) + n
        by_health[hs] = by_health.get(hs, 0) + n
    return {
        "total": sum(by_status.values()),
        "status": sorted(by_status.items()),
        "health": sorted(by_health.items()),
        "waiting": list(first),
        "waiting_count": count,
    }


@page()
async def overview(ctx: Ctx) -> Response:
    """What the admin's scopes allow of the state of core, at a glance."""
    plugins: dict[str, Any] | None = None
    if ctx.has("plugins:manage"):
        plugins = await plugin_counts(ctx)
    lanes = None
    if ctx.has("plugins:manage") or ctx.has("egress:manage"):
        snap = ctx.core.snapshot.current
        lanes = {"egress_enabled": snap.egress.enabled, "egress_version": snap.egress_version}
    chain = denials = None
    if ctx.has("audit:read"):
        chain = await chain_state(ctx)
        denials = await recent_denials(ctx)
    traffic = None  # this process's last hour, from the same counters as /metrics
    if ctx.has("metrics:read") and ctx.core.sampler is not None:
        traffic = ctx.core.sampler.history.view(ctx.core.sampler.lanes())
    return ctx.render(
        "overview.html",
        plugins=plugins,
        lanes=lanes,
        chain=chain,
        denials=denials,
        result=None,
        traffic=traffic,
    )
