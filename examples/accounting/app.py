"""Accounting: opens an account for every `UserCreated` event.

For each event it asks `identity` (the alias of the IdentityPlugin contract: the
user-management plugin, which it declares in `dependencies`) for the user's profile through
core's operator lane, and fetches an exchange rate from `rates.example.org` (its only
`allowed_domains` entry) through core's egress proxy. `GET /api/accounts/{user_id}` and `GET
/api/accounts` show what it recorded. A handler that raises makes core retry the delivery.

Environment: RATES_URL (default https://rates.example.org/v1/latest?base=USD), CURRENCY
(default EUR), plus what the SDK reads (see README.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse
from vivified_sdk import AssertionMiddleware, CloudEvent, Plugin

HERE = Path(__file__).resolve().parent
RATES_URL = "https://rates.example.org/v1/latest?base=USD"


def load_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((HERE / "manifest.json").read_text())
    if os.environ.get("VIVIFIED_PLUGIN_URL"):
        manifest["base_url"] = os.environ["VIVIFIED_PLUGIN_URL"]
    return manifest


def create_app(plugin: Plugin | None = None) -> FastAPI:
    plugin = plugin or Plugin(
        gateway_url=os.environ.get("VIVIFIED_GATEWAY_URL", "http://127.0.0.1:8000"),
        manifest=load_manifest(),
        state_dir=os.environ.get("VIVIFIED_STATE_DIR", str(HERE / ".vivified-plugin")),
        egress_proxy=os.environ.get("VIVIFIED_EGRESS_PROXY", "127.0.0.1:8081"),
    )
    offline = os.environ.get("VIVIFIED_OFFLINE") == "1"
    rates_url = os.environ.get("RATES_URL", RATES_URL)
    currency = os.environ.get("CURRENCY", "EUR")
    accounts: dict[str, dict[str, Any]] = {}
    web: list[httpx.AsyncClient] = []  # the egress client, made once registered

    async def egress() -> httpx.AsyncClient:
        if not web:
            web.append(await plugin.egress_client())
        return web[0]

    async def on_event(event: CloudEvent) -> None:
        if event.type != "UserCreated" or not isinstance(event.data, dict):
            return
        user_id = str(event.data["user_id"])
        # operator lane: core checks our dependency on the identity provider and PII trait
        found = await plugin.call("identity", "GET", f"users/{user_id}")
        profile = found.json()
        # proxy lane: only allowlisted hosts; raise_for_status makes core retry on failure
        answer = await (await egress()).get(rates_url)
        answer.raise_for_status()
        rate = float(answer.json()["rates"][currency])
        accounts[user_id] = {
            "user_id": user_id,
            "username": event.data.get("username"),
            "department": profile.get("department"),
            "cost_center": (profile.get("attributes") or {}).get("cost_center"),
            "currency": currency,
            "rate": rate,
            "rate_source": str(answer.url),
            "event_id": event.id,
            "published_by": event.publisher,
            "opened_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if offline:
            yield
            await plugin.stop()
            return
        async with plugin:
            yield

    app = FastAPI(title="Accounting Plugin", version="1.0.0", lifespan=lifespan)
    app.state.plugin = plugin
    app.add_middleware(AssertionMiddleware, audience=plugin.id, jwks=plugin.jwks)
    # CloudEvents deliveries: assertion and envelope verified, duplicates skipped
    app.router.add_route(
        "/events", plugin.event_endpoint(on_event), methods=["POST"], include_in_schema=False
    )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy", "plugin": "accounting"}

    @app.get("/docs.md", response_class=PlainTextResponse)
    async def docs() -> str:
        return (HERE / "docs.md").read_text()

    @app.get("/api/accounts")
    async def list_accounts() -> dict[str, Any]:
        return {"items": list(accounts.values())}

    @app.get("/api/accounts/{user_id}")
    async def get_account(user_id: str) -> dict[str, Any]:
        if user_id not in accounts:
            raise HTTPException(404, "no account for this user yet")
        return accounts[user_id]

    return app


app = create_app()
