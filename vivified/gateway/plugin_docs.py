"""Plugin documentation pages (manifest `docs`): fetched by core, rendered, cached.

After every snapshot swap the gateway compares each active plugin's manifest and base URL
with what the `plugin_docs` table holds; a plugin that became active, or whose manifest
changed, gets its page fetched again (a failed fetch is retried after `RETRY_AFTER`). The
fetch uses core's own HTTP client: `http`/`https` only, no proxy from the environment, no
credentials sent, `MAX_BYTES` at most, `TIMEOUT` for the whole exchange, and redirects
followed only while they stay under the plugin's base URL. Each gateway process syncs by
itself; two doing the same fetch at once store the same row.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vivified.gateway.docs_render import RENDERER, render_markdown
from vivified.registry.store.snapshot import PluginView, Snapshot, SnapshotHolder
from vivified.registry.store.tables import PluginDoc

log = logging.getLogger(__name__)

MAX_BYTES = 256 * 1024
TIMEOUT = 10.0
MAX_REDIRECTS = 3
RETRY_AFTER = 300.0
CONCURRENCY = 4
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class DocsFetchError(Exception):
    """Why a page could not be had: a stable `code` and a sentence."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Wanted:
    plugin_id: str
    url: str
    fingerprint: str


def under_base(base_url: str, url: str) -> bool:
    """Whether `url` has the scheme, host and port of `base_url` and lies under its path."""
    base, target = urlsplit(base_url), urlsplit(url)
    if target.scheme not in {"http", "https"} or target.scheme != base.scheme:
        return False
    try:
        same_host = (target.hostname, target.port) == (base.hostname, base.port)
    except ValueError:
        return False
    prefix = base.path.rstrip("/") + "/"
    return same_host and not target.username and target.path.startswith(prefix)


def docs_url(base_url: str, path: str) -> str:
    """The page's URL: the manifest's path appended to the base URL (never replacing it)."""
    return base_url.rstrip("/") + path


def wanted(view: PluginView) -> Wanted | None:
    """The page an active plugin declares, with the fingerprint of what declared it."""
    path = view.manifest.get("docs")
    if not view.active or not isinstance(path, str) or not path.startswith("/"):
        return None
    body = json.dumps([view.base_url, dict(view.manifest)], sort_keys=True, default=str)
    digest = hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()
    return Wanted(view.id, docs_url(view.base_url, path), digest)


async def fetch_markdown(client: httpx.AsyncClient, base_url: str, url: str) -> str:
    """GET the page (following redirects only under `base_url`); raises DocsFetchError."""
    for _ in range(MAX_REDIRECTS + 1):
        if not under_base(base_url, url):
            raise DocsFetchError("docs_off_base", "the page is not under the plugin's base URL")
        try:
            async with client.stream("GET", url, headers={"Accept": "text/markdown"}) as r:
                if r.status_code in REDIRECTS and "location" in r.headers:
                    url = urljoin(url, r.headers["location"])
                    continue
                if r.status_code != 200:
                    raise DocsFetchError("docs_http_status", f"the plugin answered {r.status_code}")
                declared = r.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_BYTES:
                    raise DocsFetchError("docs_too_large", f"the page is over {MAX_BYTES} bytes")
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_BYTES:
                        raise DocsFetchError(
                            "docs_too_large", f"the page is over {MAX_BYTES} bytes"
                        )
        except httpx.TimeoutException as exc:
            raise DocsFetchError("docs_timeout", "the plugin did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise DocsFetchError("docs_unreachable", "the plugin could not be reached") from exc
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DocsFetchError("docs_not_utf8", "the page is not UTF-8 text") from exc
        if "\x00" in text:
            raise DocsFetchError("docs_not_text", "the page is not text")
        return text.removeprefix("\ufeff")
    raise DocsFetchError("docs_redirect_loop", f"more than {MAX_REDIRECTS} redirects")


def new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(TIMEOUT),
        limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0),
        headers={"User-Agent": "vivified-core (plugin docs)"},
    )


class PluginDocs:
    """Keeps `plugin_docs` in step with the active plugins' manifests."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], snapshot: SnapshotHolder):
        self._sessions = sessions
        self._snapshot = snapshot
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._stopped = False

    def start(self) -> None:
        self._client = new_client()
        self._snapshot.add_listener(self._on_snapshot)
        self._on_snapshot(self._snapshot.current)

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    def _on_snapshot(self, _snap: Snapshot) -> None:
        """A swap: sync in the background (never holding up the reload); one run at a time."""
        if self._stopped:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run(), name="plugin-docs-sync")

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self.sync(self._snapshot.current)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("plugin docs sync failed; the next snapshot swap tries again")
            if not self._again:
                return

    async def sync(self, snap: Snapshot) -> int:
        """Fetch what is missing or stale, forget what is no longer declared; returns the
        number of pages fetched (or tried)."""
        want = {w.plugin_id: w for v in snap.plugins.values() if (w := wanted(v)) is not None}
        async with self._sessions() as s:
            rows = (
                await s.execute(
                    select(
                        PluginDoc.plugin_id,
                        PluginDoc.fingerprint,
                        PluginDoc.state,
                        PluginDoc.fetched_at,
                    )
                )
            ).all()
            have = {r[0]: r for r in rows}
            gone = [pid for pid in have if pid not in snap.plugins]
            if gone:
                await s.execute(delete(PluginDoc).where(col(PluginDoc.plugin_id).in_(gone)))
                await s.commit()
        now = time.time()
        todo = [
            w
            for pid, w in want.items()
            if pid not in have
            or have[pid][1] != w.fingerprint
            or (have[pid][2] != "ok" and now - have[pid][3] > RETRY_AFTER)
        ]
        if not todo:
            return 0
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(w: Wanted) -> None:
            async with limit:
                await self.refresh(w, snap.plugins[w.plugin_id].base_url)

        await asyncio.gather(*(one(w) for w in todo))
        return len(todo)

    async def refresh(self, w: Wanted, base_url: str) -> PluginDoc:
        """Fetch, render and store one page (an error keeps the last good page)."""
        client = self._client or new_client()
        values: dict[str, Any] = {"fingerprint": w.fingerprint, "source": w.url}
        try:
            markdown = await fetch_markdown(client, base_url, w.url)
        except DocsFetchError as exc:
            log.warning(
                "plugin docs not fetched",
                extra={"plugin": w.plugin_id, "reason": exc.code, "url": w.url},
            )
            values |= {"state": "error", "error": exc.code}
        else:
            page = render_markdown(markdown)
            values |= {
                "state": "ok",
                "error": "",
                "markdown": markdown,
                "html": page.html,
                "toc": page.toc,
                "renderer": RENDERER,
                "size": len(markdown.encode("utf-8", "surrogatepass")),
            }
        finally:
            if client is not self._client:
                await client.aclose()
        return await store(self._sessions, w.plugin_id, values)


async def store(
    sessions: async_sessionmaker[AsyncSession], plugin_id: str, values: Mapping[str, Any]
) -> PluginDoc:
    """Insert or update the plugin's row (a concurrent insert by another process wins)."""
    for _ in range(2):
        async with sessions() as s:
            row = await s.get(PluginDoc, plugin_id)
            if row is None:
                row = PluginDoc(plugin_id=plugin_id, fetched_at=time.time(), **values)
                s.add(row)
            else:
                for key, value in values.items():
                    setattr(row, key, value)
                row.fetched_at = time.time()
            try:
                await s.commit()
            except IntegrityError:
                continue
            return row
    raise RuntimeError(f"could not store the docs of {plugin_id}")
