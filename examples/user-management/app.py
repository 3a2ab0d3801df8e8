"""User Management: the seed's example IdentityPlugin (contract alias `identity`).

`GET /health` answers `{"status": "healthy", "plugin": "user-management"}`; `GET
/api/users/{user_id}` answers placeholder extended profile data (a real plugin backs it with
storage). Every call under `/api/` must carry core's assertion (`AssertionMiddleware`): only
calls that core authenticated, authorized and audited reach it. Run it with
`python -m uvicorn app:app` or `python main.py` (see README.md for the environment).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from vivified_sdk import AssertionMiddleware, Plugin

HERE = Path(__file__).resolve().parent
DEPARTMENTS = ("Engineering", "Finance", "People", "Sales", "Support")
MANAGERS = ("ada", "grace", "linus", "margaret", "barbara")


def load_manifest() -> dict[str, Any]:
    """manifest.json, with `base_url` from VIVIFIED_PLUGIN_URL when set (where core reaches
    this process)."""
    manifest: dict[str, Any] = json.loads((HERE / "manifest.json").read_text())
    if os.environ.get("VIVIFIED_PLUGIN_URL"):
        manifest["base_url"] = os.environ["VIVIFIED_PLUGIN_URL"]
    return manifest


def profile(user_id: str) -> dict[str, Any]:
    """Placeholder extended profile data, stable for a given id."""
    n = int(hashlib.sha256(user_id.encode()).hexdigest(), 16)
    return {
        "user_id": user_id,
        "department": DEPARTMENTS[n % len(DEPARTMENTS)],
        "manager": MANAGERS[(n // 7) % len(MANAGERS)],
        "title": "Staff member",
        "location": "Remote",
        "traits": ["employee"],
        "attributes": {"cost_center": f"CC-{n % 900 + 100}", "clearance": "standard"},
    }


def create_app(plugin: Plugin | None = None) -> FastAPI:
    plugin = plugin or Plugin(
        gateway_url=os.environ.get("VIVIFIED_GATEWAY_URL", "http://127.0.0.1:8000"),
        manifest=load_manifest(),
        state_dir=os.environ.get("VIVIFIED_STATE_DIR", str(HERE / ".vivified-plugin")),
    )
    offline = os.environ.get("VIVIFIED_OFFLINE") == "1"  # tests: no core, no registration

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if offline:
            yield
            await plugin.stop()
            return
        async with plugin:  # register, keep the token fresh, send heartbeats
            yield

    app = FastAPI(title="User Management Plugin", version="1.0.0", lifespan=lifespan)
    app.state.plugin = plugin
    app.add_middleware(AssertionMiddleware, audience=plugin.id, jwks=plugin.jwks)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy", "plugin": "user-management"}

    @app.get("/docs.md", response_class=PlainTextResponse)
    async def docs() -> str:
        return (HERE / "docs.md").read_text()

    @app.get("/api/users/{user_id}")
    async def user_info(user_id: str, request: Request) -> dict[str, Any]:
        return {**profile(user_id), "requested_by": request.state.vivified_caller}

    return app


app = create_app()
