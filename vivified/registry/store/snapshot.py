"""The in-memory view of plugins, grants and egress settings that the hot paths read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select

from vivified.policy.audit_levels import declared_level, effective_level
from vivified.policy.egress_settings import (
    DEFAULT_EGRESS_DOCUMENT,
    EgressSettings,
    parse_egress_document,
)
from vivified.registry.store import revision
from vivified.registry.store.tables import ConfigDocument, ContractChoice, Grant, Plugin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginView:
    """What the lanes need to know about one plugin, without touching the database."""

    id: str
    status: str
    gen: int
    base_url: str
    manifest: Mapping[str, Any]
    traits: frozenset[str]
    classification: frozenset[str]
    contracts: tuple[str, ...]
    dependencies: frozenset[str]
    endpoints: Mapping[str, str]
    health: str = "unknown"
    health_failures: int = 0
    egress_domains: tuple[str, ...] = ()
    egress_mode: str = "enforce"
    audit_level: str = "basic"  # effective: declared, raised to what traits and data need
    since: float = 0.0  # when the id was registered: one incarnation of the plugin

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class GrantView:
    """An admin grant: `caller` may use `target` (optionally only some methods and paths)."""

    id: str
    caller: str
    target: str
    methods: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """An immutable picture of the registry; replaced whole, never mutated."""

    plugins: Mapping[str, PluginView] = field(default_factory=dict)
    grants: tuple[GrantView, ...] = ()
    contract_choices: Mapping[str, str] = field(default_factory=dict)
    egress: EgressSettings = field(default_factory=EgressSettings)
    egress_version: int = 0
    loaded_at: float = 0.0
    revision: int = 0  # the registry's revision when loading began (`registry.store.revision`)

    def plugin_gen(self, plugin_id: str) -> int | None:
        """The current token generation of a plugin, or None when it does not exist."""
        view = self.plugins.get(plugin_id)
        return None if view is None else view.gen


def plugin_view(row: Any) -> PluginView:
    """Build the hot-path view of a plugin row."""
    m = row.manifest or {}
    security = m.get("security") or {}
    traits = frozenset(m.get("traits") or ())
    classification = frozenset(security.get("data_classification") or ())
    return PluginView(
        id=row.id,
        status=row.status,
        gen=row.gen,
        base_url=row.base_url_override or row.base_url,
        manifest=m,
        traits=traits,
        classification=classification,
        contracts=tuple(m.get("contracts") or ()),
        dependencies=frozenset(m.get("dependencies") or ()),
        endpoints=dict(m.get("endpoints") or {}),
        health=row.health_state,
        health_failures=row.health_failures,
        egress_domains=tuple(row.egress_domains or ()),
        egress_mode=row.egress_mode,
        audit_level=effective_level(declared_level(m), traits, classification),
        since=row.created_at,
    )


async def load_snapshot(sessions: async_sessionmaker[AsyncSession]) -> Snapshot:
    """Read everything the lanes need in one pass."""
    async with sessions() as s:
        at = await revision.current(s)  # first: what follows is at least this new
        # Core rows, not ORM objects: this runs after every change, over every plugin.
        table = Plugin.__table__  # type: ignore[attr-defined]
        plugins: list[Any] = list((await s.execute(select(table))).all())
        grants = (await s.execute(select(Grant))).scalars().all()
        choices = (await s.execute(select(ContractChoice))).scalars().all()
        egress_row = await s.get(ConfigDocument, "egress")
    doc = egress_row.document if egress_row else DEFAULT_EGRESS_DOCUMENT
    return Snapshot(
        plugins={p.id: plugin_view(p) for p in plugins},
        grants=tuple(
            GrantView(
                g.id, g.caller, g.target, frozenset(m.upper() for m in g.methods), tuple(g.paths)
            )
            for g in grants
        ),
        contract_choices={c.contract: c.plugin_id for c in choices},
        egress=parse_egress_document(doc),
        egress_version=egress_row.version if egress_row else 0,
        loaded_at=time.time(),
        revision=at,
    )


Listener = Callable[[Snapshot], Awaitable[None] | None]


class SnapshotHolder:
    """Holds the current snapshot; `reload()` swaps in a fresh one atomically."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._current = Snapshot()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self._publisher: Callable[[str], Awaitable[object]] | None = None
        self._requested = 0  # reload requests so far
        self._completed = 0  # requests covered by the last finished rebuild

    @property
    def current(self) -> Snapshot:
        return self._current

    def set_publisher(self, publisher: Callable[[str], Awaitable[object]]) -> None:
        """How `changed()` tells the other processes (the config layer wires NATS in)."""
        self._publisher = publisher

    async def changed(self, kind: str) -> Snapshot:
        """After a committed registry change: raise the registry's revision (so that a process
        that has not heard of the change yet confirms a refusal before answering it), reload
        here, then notify every other process."""
        try:
            await revision.bump(self._sessions)
        except Exception:  # the change stands; the notice and the periodic reload carry it
            log.exception("registry revision not raised")
        fresh = await self.reload()
        if self._publisher is not None:
            try:
                await self._publisher(kind)
            except Exception:  # the periodic reload carries the change
                log.exception("change notice failed")
        return fresh

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(snapshot)` after every swap."""
        self._listeners.append(listener)

    async def reload(self) -> Snapshot:
        """Rebuild from the registry and swap. Concurrent callers coalesce: a caller whose
        request is covered by a rebuild that *started* after it asked returns at once, so a
        burst of N changes costs a couple of rebuilds, not N."""
        self._requested += 1
        ticket = self._requested
        async with self._lock:
            if self._completed >= ticket:
                return self._current
            covers = self._requested
            fresh = await load_snapshot(self._sessions)
            self._current = fresh
            self._completed = covers
        for listener in self._listeners:
            result = listener(fresh)
            if result is not None:
                await result
        return fresh

    async def confirm(self) -> Snapshot:
        """The snapshot a refusal may stand on: the current one while the registry's revision
        is no newer than the one it was loaded at, else a fresh one (coalesced with any rebuild
        that starts after this call). One primary-key read; when the registry cannot be read,
        the current snapshot (the refusal stands, as it would have without this check)."""
        snap = self._current
        try:
            now = await revision.read(self._sessions)
        except Exception:
            log.debug("registry revision unreadable; refusing on the current snapshot")
            return snap
        if now <= snap.revision:
            return snap
        try:
            return await self.reload()
        except Exception:
            log.exception("snapshot reload failed; keeping the last good snapshot")
            return self._current

    def start_periodic(self, interval: float) -> None:
        """Reload every `interval` seconds as a safety net for missed change notices."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.reload()
                except Exception:  # the last good snapshot stays in force
                    log.exception("snapshot reload failed; keeping the last good snapshot")

        if self._task is None:
            self._task = asyncio.create_task(loop(), name="snapshot-reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
