"""HR: adds people (`POST /api/users`) and publishes the canonical `UserCreated` event.

The event's `data` follows the catalogue's schema (`GET /events/types` on core): `user_id`,
`username`, `email`, `display_name`, `roles`, `created_at`. Core checks the type, that this
plugin declared it in `events.publishes`, and delivers it to every subscriber allowed to see
PII. Run it with `python -m uvicorn app:app` or `python main.py` (see README.md).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from vivified_sdk import AssertionMiddleware, CoreError, Plugin

HERE = Path(__file__).resolve().parent


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=200, pattern=r"^[a-z0-9._-]+$")
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    display_name: str | None = Field(default=None, max_length=200)
    roles: list[str] = Field(default_factory=list, max_length=20)


def load_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((HERE / "manifest.json").read_text())
    if os.environ.get("VIVIFIED_PLUGIN_URL"):
        manifest["base_url"] = os.environ["VIVIFIED_PLUGIN_URL"]
    return manifest


def problem(status: int, reason: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"type": f"https://vivified.dev/problems/{reason}", "title": reason.replace("_", " "),
         "status": status, "detail": detail, "reason": reason, **extra},
        status_code=status,
        media_type="application/problem+json",
    )  # fmt: skip


def create_app(plugin: Plugin | None = None) -> FastAPI:
    plugin = plugin or Plugin(
        gateway_url=os.environ.get("VIVIFIED_GATEWAY_URL", "http://127.0.0.1:8000"),
        manifest=load_manifest(),
        state_dir=os.environ.get("VIVIFIED_STATE_DIR", str(HERE / ".vivified-plugin")),
    )
    offline = os.environ.get("VIVIFIED_OFFLINE") == "1"
    users: dict[str, dict[str, Any]] = {}  # a real plugin keeps them in a database

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if offline:
            yield
            await plugin.stop()
            return
        async with plugin:
            yield

    app = FastAPI(title="HR Plugin", version="1.0.0", lifespan=lifespan)
    app.state.plugin = plugin
    app.add_middleware(AssertionMiddleware, audience=plugin.id, jwks=plugin.jwks)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"path": "/" + "/".join(str(p) for p in e["loc"][1:]), "code": e["type"],
             "message": e["msg"]}
            for e in exc.errors()
        ]  # fmt: skip
        return problem(422, "invalid_user", "the user breaks the contract", errors=errors)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy", "plugin": "human-resources"}

    @app.get("/docs.md", response_class=PlainTextResponse)
    async def docs() -> str:
        return (HERE / "docs.md").read_text()

    @app.post("/api/users", status_code=201, response_model=None)
    async def add_user(new: NewUser, request: Request) -> dict[str, Any] | JSONResponse:
        if any(u["username"] == new.username for u in users.values()):
            return problem(409, "username_taken", f"{new.username!r} already exists")
        user = {
            "user_id": f"u-{uuid.uuid4().hex[:12]}",
            "username": new.username,
            "display_name": new.display_name or new.username,
            "roles": sorted(set(new.roles)),
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        if new.email:
            user["email"] = new.email
        try:  # stored by core once this returns: delivered at least once to subscribers
            event_id = await plugin.publish("UserCreated", user, subject=user["user_id"])
        except CoreError as exc:
            return problem(502, "publish_failed", f"core refused the event: {exc.reason}")
        users[user["user_id"]] = user
        return {"user": user, "event": {"type": "UserCreated", "id": event_id},
                "created_by": request.state.vivified_caller}  # fmt: skip

    @app.get("/api/users/{user_id}")
    async def get_user(user_id: str) -> dict[str, Any]:
        if user_id not in users:
            raise HTTPException(404, "no such user")
        return users[user_id]

    return app


app = create_app()
