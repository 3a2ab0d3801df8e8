"""The HTTP side of the wire contract: one pooled keep-alive client to core's gateway.

`CoreClient` knows core's routes (register, token swap, heartbeat, the operator lane,
`POST /events`) and turns every error answer into a typed `CoreError`. It holds no token of
its own: callers pass the credential of each request, so a refreshed token is used at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from vivified_sdk.errors import (
    CoreError,
    CoreUnreachable,
    RateLimited,
    RegistrationRefused,
    ServiceUnavailable,
    problem_error,
    raise_for_problem,
)

T = TypeVar("T")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=4)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, bounded in attempts and in total time."""

    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    max_elapsed: float = 120.0
    max_attempts: int = 50

    def delay(self, attempt: int) -> float:
        base = min(self.max_delay, self.initial * self.factor ** max(0, attempt - 1))
        return base * random.uniform(0.8, 1.0)


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, httpx.TransportError | ServiceUnavailable | RateLimited)


async def with_retry(fn: Callable[[], Awaitable[T]], backoff: Backoff, what: str) -> T:
    """Run `fn()` until it succeeds, retrying unreachable-core failures (transport errors,
    5xx, 429) with `backoff`; other errors are raised at once. Raises CoreUnreachable when
    the budget is spent."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    attempt = 0
    while True:
        attempt += 1
        try:
            result: T = await fn()
            return result
        except Exception as exc:
            if not _retryable(exc):
                raise
            delay = backoff.delay(attempt)
            if isinstance(exc, CoreError) and exc.retry_after is not None:
                delay = min(backoff.max_delay, max(delay, exc.retry_after))
            elapsed = loop.time() - started
            if attempt >= backoff.max_attempts or elapsed + delay > backoff.max_elapsed:
                raise CoreUnreachable(
                    f"{what}: core unreachable after {attempt} attempts "
                    f"({elapsed:.1f}s): {type(exc).__name__}: {exc}"
                ) from exc
            await asyncio.sleep(delay)


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class CoreClient:
    """Pooled keep-alive `httpx.AsyncClient` to the gateway at `gateway_url`."""

    def __init__(
        self,
        gateway_url: str,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        if not gateway_url.startswith(("http://", "https://")):
            raise ValueError("gateway_url must be an http(s) URL")
        self.gateway_url = gateway_url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.gateway_url, timeout=timeout, limits=limits, trust_env=False
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def register(
        self, manifest: Mapping[str, Any], credential: str | None
    ) -> tuple[int, dict[str, Any]]:
        """`POST /plugins/register`: (201 or 200, body); errors raise the typed CoreError."""
        resp = await self.http.post(
            "/plugins/register", json=dict(manifest), headers=_bearer(credential)
        )
        if resp.status_code >= 400:
            if resp.status_code == 429 or resp.status_code >= 500:
                raise problem_error(resp)  # retried while core is starting or busy
            raise problem_error(resp, RegistrationRefused)
        return resp.status_code, _object(resp)

    async def refresh_token(self, plugin_id: str, token: str) -> dict[str, Any]:
        """`POST /plugins/{id}/token`: `{"token", "expires_at"}`."""
        resp = await self.http.post(f"/plugins/{quote(plugin_id)}/token", headers=_bearer(token))
        raise_for_problem(resp)
        return _object(resp)

    async def heartbeat(
        self,
        plugin_id: str,
        token: str,
        status: str | None = None,
        metrics: Mapping[str, int | float | str | bool] | None = None,
    ) -> dict[str, Any]:
        """`POST /plugins/{id}/heartbeat` `{status?, metrics?}`: `{"state", "last_heartbeat"}`."""
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = status
        if metrics:
            body["metrics"] = dict(metrics)
        resp = await self.http.post(
            f"/plugins/{quote(plugin_id)}/heartbeat", json=body, headers=_bearer(token)
        )
        raise_for_problem(resp)
        return _object(resp)

    async def call(
        self,
        token: str,
        service: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpx's per-request timeout)
        raise_for_status: bool = True,
    ) -> httpx.Response:
        """A call through the operator lane: `{gateway}/{service}/{path}`."""
        if not service or "/" in service:
            raise ValueError("service must be a plugin id or contract alias")
        url = f"/{quote(service, safe='')}/{path.lstrip('/')}"
        sent = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        sent.update(_bearer(token))
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = timeout
        resp = await self.http.request(
            method.upper(),
            url,
            params=dict(params) if params else None,
            json=json,
            content=content,
            headers=sent,
            **kwargs,
        )
        if raise_for_status and resp.status_code >= 400:
            await resp.aread()
            raise problem_error(resp)
        return resp

    async def publish(
        self,
        token: str,
        event_type: str,
        data: Any,
        *,
        event_id: str | None = None,
        subject: str | None = None,
    ) -> str:
        """`POST /events` -> 202 `{"id"}`; returns the event id."""
        body: dict[str, Any] = {"type": event_type, "data": data}
        if event_id is not None:
            body["id"] = event_id
        if subject is not None:
            body["subject"] = subject
        resp = await self.http.post("/events", json=body, headers=_bearer(token))
        raise_for_problem(resp)
        return str(_object(resp).get("id", event_id or ""))

    async def get_text(self, path: str) -> str:
        resp = await self.http.get(path)
        raise_for_problem(resp)
        return resp.text


def _object(resp: httpx.Response) -> dict[str, Any]:
    try:
        doc = resp.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
