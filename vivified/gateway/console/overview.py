"""The overview: plugins by status and health, lane switches, the audit chain, denials."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from vivified.gateway.console.audit import chain_state, recent_denials
from vivified.gateway.console.context import Ctx, page
from vivified.gateway.console.plugins import plugin_counts


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
