"""The console's routes under `/console`, behind its security-header middleware."""

from __future__ import annotations

from pathlib import Path

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vivified.config.settings import Settings
from vivified.gateway.console import admin_routes, audit, docs, login, overview, plugins, tokens
from vivified.gateway.console.context import PREFIX, Console, ConsoleError, Ctx, page
from vivified.gateway.console.security import ConsoleHeaders
from vivified.gateway.oidc import flow as oidc_flow

STATIC = Path(__file__).with_name("static")


async def to_overview(_request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@page()
async def not_found(_ctx: Ctx) -> Response:
    raise ConsoleError(404, "not_found", "there is no console page here")


def console_routes() -> list[Route | Mount]:
    return [
        Route("/", overview.overview, methods=["GET"]),
        Route("/login", login.login_form, methods=["GET"]),
        Route("/login", login.login, methods=["POST"]),
        Route("/logout", login.logout, methods=["POST"]),
        Route("/plugins", plugins.plugins_page, methods=["GET"]),
        Route("/plugins/{plugin_id}", plugins.plugin_page, methods=["GET"]),
        *admin_routes.ROUTES,  # before the catch-all plugin actions below
        Route("/plugins/{plugin_id}/docs", docs.plugin_docs_page, methods=["GET"]),
        Route("/plugins/{plugin_id}/{action}", plugins.confirm_page, methods=["GET"]),
        Route("/plugins/{plugin_id}/{action}", plugins.perform, methods=["POST"]),
        Route("/docs", docs.docs_index, methods=["GET"]),
        Route("/tokens", tokens.tokens_page, methods=["GET"]),
        Route("/tokens", tokens.create_token, methods=["POST"]),
        Route("/tokens/{token_id}/revoke", tokens.revoke_token, methods=["POST"]),
        Route("/audit", audit.audit_page, methods=["GET"]),
        Route("/audit/verify", audit.verify_chain_action, methods=["POST"]),
        *oidc_flow.ROUTES,  # /oidc/login, /oidc/callback, /oidc/signed-out
        Mount("/static", StaticFiles(directory=STATIC), name="console-static"),
        Route("/{rest:path}", not_found, methods=["GET", "POST"]),
    ]


def mount(settings: Settings) -> list[Route | Mount]:
    """`/console` (redirecting to `/console/`) and everything under it, for the app's routes."""
    console = Console(settings)
    return [
        Route(PREFIX, to_overview, methods=["GET"]),
        Mount(
            PREFIX,
            routes=console_routes(),
            middleware=[Middleware(ConsoleHeaders, console=console)],
        ),
    ]
