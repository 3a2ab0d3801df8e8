"""The proxy lane: an httpx client whose every request goes through core's egress proxy.

Core's egress proxy authenticates `http://{plugin id}:{token}@{egress host:port}` and
intercepts TLS with core's own CA (`GET {gateway}/egress/ca.pem`). `EgressTransport` keeps
an `httpx.AsyncHTTPTransport` configured with both and rebuilds it when the plugin token is
swapped, so a client made once keeps working across token refreshes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx

CA_FILE = "egress-ca.pem"
_RETIRE_AFTER = 60.0  # seconds an old transport may finish its requests after a swap


def proxy_url(plugin_id: str, token: str, egress: str) -> str:
    """`http://{id}:{token}@{host:port}` (userinfo percent-encoded)."""
    hostport = egress.split("://", 1)[-1].rstrip("/")
    return f"http://{quote(plugin_id, safe='')}:{quote(token, safe='')}@{hostport}"


async def ensure_ca(client: httpx.AsyncClient, state_dir: Path) -> Path:
    """Core's egress CA, fetched from `GET /egress/ca.pem` once and kept in `state_dir`."""
    path = state_dir / CA_FILE
    if await asyncio.to_thread(lambda: path.exists() and path.stat().st_size > 0):
        return path
    resp = await client.get("/egress/ca.pem")
    resp.raise_for_status()
    pem = resp.text
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("core's /egress/ca.pem is not a PEM certificate")
    await asyncio.to_thread(_write, path, pem)
    return path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def ssl_context(ca_file: Path) -> ssl.SSLContext:
    """The system store plus core's CA (intercepted TLS is signed by core's CA;
    passthrough domains show their own certificates)."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


class EgressTransport(httpx.AsyncBaseTransport):
    """Sends through the egress proxy with the plugin's *current* token."""

    def __init__(
        self,
        plugin_id: str,
        egress: str,
        ca_file: Path,
        current_token: Callable[[], str],
        *,
        limits: httpx.Limits | None = None,
    ) -> None:
        self._plugin_id = plugin_id
        self._egress = egress
        self._ctx = ssl_context(ca_file)
        self._current_token = current_token
        self._limits = limits or httpx.Limits(max_connections=50, keepalive_expiry=4)
        self._token = ""
        self._inner: httpx.AsyncHTTPTransport | None = None
        self._retired: set[asyncio.Task[None]] = set()
        self._old: list[httpx.AsyncHTTPTransport] = []

    def _transport(self) -> httpx.AsyncHTTPTransport:
        token = self._current_token()
        if self._inner is None or token != self._token:
            old, self._inner = (
                self._inner,
                httpx.AsyncHTTPTransport(
                    proxy=httpx.Proxy(proxy_url(self._plugin_id, token, self._egress)),
                    verify=self._ctx,
                    limits=self._limits,
                    trust_env=False,
                ),
            )
            self._token = token
            if old is not None:
                self._old.append(old)
                task = asyncio.get_running_loop().create_task(self._retire(old))
                self._retired.add(task)
                task.add_done_callback(self._retired.discard)
        return self._inner

    async def _retire(self, old: httpx.AsyncHTTPTransport) -> None:
        await asyncio.sleep(_RETIRE_AFTER)
        if old in self._old:
            self._old.remove(old)
            await old.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport().handle_async_request(request)

    async def aclose(self) -> None:
        for task in list(self._retired):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for old in self._old:
            await old.aclose()
        self._old.clear()
        if self._inner is not None:
            await self._inner.aclose()
            self._inner = None
