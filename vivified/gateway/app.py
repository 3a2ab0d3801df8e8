"""The gateway's Starlette application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vivified.config.settings import Settings
from vivified.gateway import meta as routes_meta
from vivified.gateway import plugins as routes_plugins
from vivified.gateway.admin import admins as routes_admins
from vivified.gateway.admin import config as routes_config
from vivified.gateway.admin import foundation as routes_admin
from vivified.gateway.admin import grants as routes_grants
from vivified.gateway.admin import keys as routes_keys
from vivified.gateway.admin import limits as routes_limits
from vivified.gateway.console import mount as console_mount
from vivified.gateway.core import Core
from vivified.gateway.events import routes as routes_events
from vivified.gateway.health import routes as routes_health
from vivified.gateway.metrics import endpoint as routes_metrics
from vivified.gateway.middleware import RequestContext
from vivified.gateway.oidc.api import ADMIN_ROUTES as routes_oidc_admin
from vivified.gateway.operator.lane import OperatorLane
from vivified.gateway.operator.websocket import relay_websocket
from vivified.gateway.problems import EXCEPTION_HANDLERS, direct


class Gateway:
    """The ASGI app uvicorn serves. Operator-lane requests go straight to the lane (it sets
    its own request id) instead of through Starlette's router, which would try every core
    route first; `POST /events` goes straight to its endpoint behind the request-id
    middleware (see `problems.direct`); everything else, and the lifespan, is Starlette's."""

    def __init__(self, app: Starlette, lane: ASGIApp, core_segments: frozenset[str]) -> None:
        self.app = app
        self.lane = lane
        self.core_segments = core_segments
        self.publish = RequestContext(direct(routes_events.publish))

    @property
    def state(self) -> State:
        return self.app.state

    def is_lane(self, path: str) -> bool:
        first, sep, _ = path[1:].partition("/")
        return bool(sep) and first not in self.core_segments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/events" and scope["method"] == "POST":
            scope["app"] = self.app
            await self.publish(scope, receive, send)
        elif scope["type"] == "http" and self.is_lane(scope["path"]):
            scope["app"] = self.app
            await self.lane(scope, receive, send)
        elif scope["type"] == "websocket" and self.is_lane(scope["path"]):
            scope["app"] = self.app
            await relay_websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(settings: Settings, core: Core | None = None) -> Gateway:
    """Build the gateway. Without `core`, the lifespan starts one from `settings` and stops it."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = core is None
        running = await Core.start(settings) if core is None else core
        app.state.core = running
        try:
            yield
        finally:
            if owned:
                await running.stop()

    lane = OperatorLane()
    routes = [
        # Starlette tries routes in order: the busiest (POST /events) first. No two modules
        # share a path, so the order changes nothing else.
        *routes_events.ROUTES,
        *routes_meta.ROUTES,
        *routes_plugins.ROUTES,
        *routes_health.ROUTES,
        *routes_admin.ROUTES,
        *routes_grants.ROUTES,
        *routes_config.ROUTES,
        *routes_limits.ROUTES,
        *routes_admins.ROUTES,
        *routes_keys.ROUTES,
        *routes_metrics.ROUTES,  # GET /metrics (metrics:read)
        *routes_oidc_admin,
        *console_mount(settings),  # `/console` and its Mount (the Route puts it in core_segments)
        # The operator lane catches everything else, so it must stay last (Gateway sends
        # lane paths to it directly; this route keeps it in the route table for the rest).
        Route("/{service}/{rest:path}", lane),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestContext)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    # No 307 to a slash-added path: `/x` must not turn into an operator-lane call `/x/`.
    app.router.redirect_slashes = False
    core_segments = frozenset(
        r.path.split("/")[1] for r in routes if isinstance(r, Route) and not r.path.startswith("/{")
    )
    return Gateway(app, lane, core_segments)  # the lane sets its own request id
