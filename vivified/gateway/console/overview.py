"""The overview: plugins by status and health, lane switches, the audit chain, denials."""

from __future__ import annotations

from collections import Counter
from typing import Any

from starlette.responses import Response

from vivified.gateway.console.audit import chain_state, recent_denials
from vivified.gateway.console.context import Ctx, page
from vivified.gateway.console.plugins import all_plugins


@page()
async def overview(ctx: Ctx) -> Response:
    """What the admin's scopes allow of the state of core, at a glance."""
    plugins: dict[str, Any] | None = None
    if ctx.has("plugins:manage"):
        rows = await all_plugins(ctx)
        plugins = {
            "total": len(rows),
            "status": sorted(Counter(r["status"] for r in rows).items()),
            "health": sorted(Counter(r["health"] for r in rows).items()),
            "waiting": [r["id"] for r in rows if r["status"] == "registered" or r["pending"]],
        }
    lanes = None
    if ctx.has("plugins:manage") or ctx.has("egress:manage"):
        snap = ctx.core.snapshot.current
        lanes = {"egress_enabled": snap.egress.enabled, "egress_version": snap.egress_version}
    chain = denials = None
    if ctx.has("audit:read"):
        chain = await chain_state(ctx)
        denials = await recent_denials(ctx)
    return ctx.render(
        "overview.html", plugins=plugins, lanes=lanes, chain=chain, denials=denials, result=None
    )
