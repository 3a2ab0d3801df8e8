"""The gateway's Starlette application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from vivified.config.settings import Settings
from vivified.gateway import (
    routes_admin,
    routes_admins,
    routes_config,
    routes_grants,
    routes_health,
    routes_meta,
    routes_plugins,
)
from vivified.gateway.core import Core
from vivified.gateway.middleware import RequestContext
from vivified.gateway.operator_lane import OperatorLane
from vivified.gateway.problems import EXCEPTION_HANDLERS


def create_app(settings: Settings, core: Core | None = None) -> Starlette:
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

    routes = [
        *routes_meta.ROUTES,
        *routes_plugins.ROUTES,
        *routes_health.ROUTES,
        *routes_admin.ROUTES,
        *routes_grants.ROUTES,
        *routes_config.ROUTES,
        *routes_admins.ROUTES,
        # The operator lane catches everything else, so it must stay last.
        Route("/{service}/{rest:path}", OperatorLane()),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestContext)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    # No 307 to a slash-added path: `/x` must not turn into an operator-lane call `/x/`.
    app.router.redirect_slashes = False
    return app
