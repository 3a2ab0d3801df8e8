"""`Plugin`: registration, token upkeep, heartbeats and the three lanes in one object.

    plugin = Plugin(gateway_url="http://core:8000", manifest_path="manifest.json",
                    registration_token=os.environ["VIVIFIED_REGISTRATION_TOKEN"],
                    state_dir="/var/lib/my-plugin")
    async with plugin:                       # registers, then refreshes and heartbeats
        user = (await plugin.call("identity", "GET", "users/42")).json()
        await plugin.publish("UserUpdated", {...}, subject="u42")

Start-up registers with the saved plugin token when there is a valid one (a 200
re-registration: no new registration token needed), else with the registration token;
while core is unreachable it retries with bounded exponential backoff. The token is kept in
`{state_dir}/token.json` (mode 0600) and swapped at `refresh_ratio` of its lifetime.
Arguments left out come from the environment: `VIVIFIED_GATEWAY_URL`, `VIVIFIED_MANIFEST`,
`VIVIFIED_REGISTRATION_TOKEN`, `VIVIFIED_STATE_DIR`, `VIVIFIED_EGRESS_PROXY` (host:port).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from vivified_sdk.client import Backoff, CoreClient, with_retry
from vivified_sdk.egress import EgressTransport, ensure_ca
from vivified_sdk.errors import CoreError, NotRegistered, RegistrationRefused
from vivified_sdk.events import EventEndpoint, Handler
from vivified_sdk.jwks import JwksCache
from vivified_sdk.middleware import ASGIApp, AssertionMiddleware
from vivified_sdk.tokens import PluginToken, TokenStore

log = logging.getLogger("vivified_sdk")

Metrics = Mapping[str, int | float | str | bool]


@dataclass(frozen=True)
class Registration:
    """What core answered at start-up: 201 (`created`) or 200 (re-registration)."""

    plugin_id: str
    status: str
    created: bool
    http_status: int
    warnings: tuple[Any, ...] = ()


def _env(value: str | Path | None, name: str) -> str | None:
    if value is not None:
        return str(value)
    return os.environ.get(name) or None


class Plugin:
    """A plugin's connection to core (see the module docstring)."""

    def __init__(
        self,
        gateway_url: str | None = None,
        manifest_path: str | Path | None = None,
        registration_token: str | None = None,
        state_dir: str | Path | None = None,
        *,
        manifest: Mapping[str, Any] | None = None,
        egress_proxy: str | None = None,
        refresh_ratio: float = 0.8,
        heartbeat_interval: float | None = 30.0,
        heartbeat_status: Callable[[], str] | None = None,
        heartbeat_metrics: Callable[[], Metrics] | None = None,
        backoff: Backoff | None = None,
        jwks_refetch_interval: float = 30.0,
        base_path: str = "",
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        url = _env(gateway_url, "VIVIFIED_GATEWAY_URL")
        if not url:
            raise ValueError("gateway_url (or VIVIFIED_GATEWAY_URL) is required")
        if manifest is None:
            path = _env(manifest_path, "VIVIFIED_MANIFEST")
            if not path:
                raise ValueError("manifest_path (or VIVIFIED_MANIFEST) is required")
            manifest = json.loads(Path(path).read_text())
        if not isinstance(manifest, Mapping) or not isinstance(manifest.get("id"), str):
            raise ValueError("the manifest must be a JSON object with an `id`")
        if not 0.1 <= refresh_ratio <= 0.95:
            raise ValueError("refresh_ratio must be between 0.1 and 0.95")
        self.manifest: dict[str, Any] = dict(manifest)
        self.id: str = str(manifest["id"])
        self.gateway_url = url.rstrip("/")
        self.registration_token = _env(registration_token, "VIVIFIED_REGISTRATION_TOKEN")
        self.state_dir = Path(_env(state_dir, "VIVIFIED_STATE_DIR") or ".vivified-plugin")
        self.egress_proxy = _env(egress_proxy, "VIVIFIED_EGRESS_PROXY")
        self.refresh_ratio = refresh_ratio
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_status = heartbeat_status
        self.heartbeat_metrics = heartbeat_metrics
        self.backoff = backoff or Backoff()
        self.base_path = base_path
        self.store = TokenStore(self.state_dir)
        kwargs: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        self.core = CoreClient(self.gateway_url, **kwargs)
        self.jwks = JwksCache(self.gateway_url, min_refetch_interval=jwks_refetch_interval)
        self.registration: Registration | None = None
        self._token: PluginToken | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._egress: list[httpx.AsyncClient] = []
        self._token_listeners: list[Callable[[PluginToken], None]] = []

    # -- the token -----------------------------------------------------------------------

    @property
    def token(self) -> str:
        """The current plugin token (never log it)."""
        if self._token is None:
            raise NotRegistered("the plugin is not registered yet")
        return self._token.token

    @property
    def token_info(self) -> PluginToken | None:
        return self._token

    def on_token(self, listener: Callable[[PluginToken], None]) -> None:
        """Call `listener` with every new token (after registration and each refresh)."""
        self._token_listeners.append(listener)

    def _set_token(self, token: PluginToken) -> None:
        self.store.save(token)
        self._token = token
        for listener in self._token_listeners:
            try:
                listener(token)
            except Exception:
                log.exception("token listener failed")

    # -- registration --------------------------------------------------------------------

    async def register(self) -> Registration:
        """Register (or re-register) with core, retrying while core is unreachable.

        Uses the saved token when it is still valid (200), else the registration token.
        Raises RegistrationRefused (every problem of a 422 in its message and `errors`) or
        CoreUnreachable when the retry budget is spent.
        """
        saved = self.store.load(self.id)
        if saved is not None and not saved.expired():
            try:
                return await self._register_with(saved.token)
            except RegistrationRefused as exc:
                if exc.status != 401 or not self.registration_token:
                    raise
                log.warning("saved token refused (%s); using the registration token", exc.reason)
        elif not self.registration_token:
            log.warning("no registration token: registering without a credential (open mode)")
        return await self._register_with(self.registration_token)

    async def _register_with(self, credential: str | None) -> Registration:
        status, body = await with_retry(
            lambda: self.core.register(self.manifest, credential), self.backoff, "register"
        )
        self._set_token(PluginToken.from_answer(self.id, body))
        self.registration = Registration(
            self.id,
            str(body.get("status", "")),
            status == 201,
            status,
            tuple(body.get("warnings") or ()),
        )
        log.info("registered %s: %s (HTTP %d)", self.id, self.registration.status, status)
        return self.registration

    async def refresh_token(self) -> PluginToken:
        """Swap the current token for a fresh one now (`POST /plugins/{id}/token`)."""
        body = await self.core.refresh_token(self.id, self.token)
        token = PluginToken.from_answer(self.id, body)
        self._set_token(token)
        return token

    async def _refresh_loop(self) -> None:
        failures = 0
        while True:
            current = self._token
            assert current is not None
            if failures:
                delay = self.backoff.delay(failures)
            else:
                delay = current.refresh_at(self.refresh_ratio) - time.time()
            await asyncio.sleep(max(0.0, delay))
            try:
                if current.expired(margin=0):
                    await self.register()  # too late to swap: start over
                else:
                    await self.refresh_token()
                failures = 0
            except asyncio.CancelledError:
                raise
            except CoreError as exc:
                failures += 1
                if exc.status == 401 and self.registration_token:
                    with contextlib.suppress(Exception):
                        await self._register_with(self.registration_token)
                        failures = 0
                        continue
                log.warning("token refresh failed: %s", exc.reason or exc.status)
            except Exception as exc:
                failures += 1
                log.warning("token refresh failed: %s", type(exc).__name__)

    # -- heartbeats ----------------------------------------------------------------------

    async def heartbeat(self) -> dict[str, Any]:
        """Send one heartbeat with the optional status and metrics callbacks' values."""
        status = self.heartbeat_status() if self.heartbeat_status else None
        metrics = self.heartbeat_metrics() if self.heartbeat_metrics else None
        return await self.core.heartbeat(self.id, self.token, status, metrics)

    async def _heartbeat_loop(self, interval: float) -> None:
        while True:
            try:
                await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("heartbeat failed: %s", getattr(exc, "reason", "") or exc)
            await asyncio.sleep(interval)

    # -- lanes ---------------------------------------------------------------------------

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call another plugin through the operator lane: `{gateway}/{service}/{path}`.

        Keyword arguments: `params`, `json`, `content`, `headers`, `timeout`,
        `raise_for_status` (default True: errors raise the typed CoreError subclasses).
        """
        return await self.core.call(self.token, service, method, path, **kwargs)

    async def publish(
        self,
        event_type: str,
        data: Any,
        *,
        id: str | None = None,
        subject: str | None = None,
    ) -> str:
        """Publish a canonical event (`POST /events`); returns its id once core stored it."""
        return await self.core.publish(self.token, event_type, data, event_id=id, subject=subject)

    def event_endpoint(self, handler: Handler, *, dedupe_size: int = 10_000) -> EventEndpoint:
        """An ASGI endpoint for `endpoints.events` calling `handler(event)` once per event."""
        return EventEndpoint(
            handler,
            audience=self.id,
            jwks=self.jwks,
            base_path=self.base_path,
            dedupe_size=dedupe_size,
        )

    def middleware(self, app: ASGIApp, *, prefix: str = "/api/") -> AssertionMiddleware:
        """Wrap `app` so every request under `prefix` needs a valid core assertion."""
        return AssertionMiddleware(
            app, audience=self.id, jwks=self.jwks, prefix=prefix, base_path=self.base_path
        )

    async def egress_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An `httpx.AsyncClient` whose requests go through core's egress proxy with the
        current token, trusting core's CA. Closed with the plugin (or by you)."""
        if not self.egress_proxy:
            raise ValueError("egress_proxy (or VIVIFIED_EGRESS_PROXY) is not set")
        self.token  # noqa: B018 (raises NotRegistered early)
        ca = await ensure_ca(self.core.http, self.state_dir)
        transport = EgressTransport(self.id, self.egress_proxy, ca, lambda: self.token)
        kwargs.setdefault("timeout", httpx.Timeout(30.0, connect=10.0))
        client = httpx.AsyncClient(transport=transport, trust_env=False, **kwargs)
        self._egress.append(client)
        return client

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> Registration:
        """Register, then start the token-refresh and heartbeat tasks."""
        registration = await self.register()
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="vivified-refresh"))
        if self.heartbeat_interval:
            self._tasks.append(
                asyncio.create_task(
                    self._heartbeat_loop(self.heartbeat_interval), name="vivified-heartbeat"
                )
            )
        return registration

    async def stop(self) -> None:
        """Stop the background tasks and close every connection."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        clients, self._egress = self._egress, []
        for client in clients:
            await client.aclose()
        await self.core.aclose()

    async def __aenter__(self) -> Plugin:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
