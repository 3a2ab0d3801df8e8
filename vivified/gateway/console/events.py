"""Events: the catalogue with its schemas (`GET /events/types`'s twin), subscribers and
their lag, and the dead letters with Replay and Discard (the event routes' own calls)."""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response

from vivified.gateway.console.context import ConsoleError, Ctx, page
from vivified.gateway.events.routes import discard_dead_letter, find_dead_letter
from vivified.gateway.events.stream import StreamUnavailable
from vivified.gateway.params import path_int
from vivified.registry.event_catalogue import catalogue_json

SCOPE = "plugins:manage"
NOTICES = {"replayed": "Replayed dead letter {}.", "discarded": "Discarded dead letter {}."}


async def _bus(ctx: Ctx) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Subscribers' lag and the dead letters; a sentence instead when the bus is away."""
    core = ctx.core
    if core.dispatcher is None:
        return [], [], "The event bus (NATS) is not configured: no deliveries to show."
    try:
        lag = await core.dispatcher.lag()
        dead = await core.events.list_dead_letters()
    except StreamUnavailable:
        return [], [], "The event bus is unavailable right now."
    return lag, dead, ""


@page(SCOPE)
async def events_page(ctx: Ctx) -> Response:
    """The catalogue, subscribers and dead letters."""
    lag, dead, unavailable = await _bus(ctx)
    q = ctx.request.query_params
    done, seq = q.get("done", ""), q.get("seq", "")
    notice = NOTICES[done].format(seq) if done in NOTICES and seq.isdigit() else ""
    return ctx.render(
        "events.html",
        types=catalogue_json()["types"],
        subscribers=lag,
        dead=dead,
        unavailable=unavailable,
        notice=notice,
    )


@page(SCOPE)
async def replay(ctx: Ctx) -> Response:
    """Deliver a dead letter again now (`POST /admin/events/dead-letters/{seq}/replay`)."""
    seq = path_int(ctx.request, "seq", "dead letter")
    if ctx.core.dispatcher is None:
        raise ConsoleError(503, "stream_unavailable", "events need NATS")
    item = await find_dead_letter(ctx.core, seq)
    ok, _status, error = await ctx.core.dispatcher.replay(seq, item)
    if not ok:
        raise ConsoleError(502, "delivery_failed", f"the subscriber did not accept it ({error})")
    return RedirectResponse(f"/console/events?done=replayed&seq={seq}", status_code=303)


@page(SCOPE)
async def discard(ctx: Ctx) -> Response:
    """Drop a dead letter for good (`DELETE /admin/events/dead-letters/{seq}`)."""
    seq = path_int(ctx.request, "seq", "dead letter")
    await discard_dead_letter(ctx.request, ctx.principal.actor, seq)
    return RedirectResponse(f"/console/events?done=discarded&seq={seq}", status_code=303)
