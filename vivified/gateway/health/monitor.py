"""Health monitoring: polls plugins (one replica per plugin, by lease), judges heartbeats,
records every transition and quarantines plugins that fail to stay healthy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.policy.health import (
    UNHEALTHY,
    Health,
    HealthPolicy,
    after_heartbeat,
    after_probe,
    from_heartbeat_age,
    should_quarantine,
)
from vivified.registry.audit.writer import AuditEvent, AuditWriter
from vivified.registry.store import leases
from vivified.registry.store.snapshot import PluginView, SnapshotHolder
from vivified.registry.store.tables import Plugin

log = logging.getLogger(__name__)

HISTORY_LIMIT = 20
METRICS_LIMIT = 4096  # bytes of JSON kept from a health body or heartbeat
QUARANTINE_REASON = "failed_to_stay_healthy"

Notify = Callable[[str, dict[str, Any]], Awaitable[object]]
Quarantine = Callable[[str, str, str], Awaitable[Any]]


def probe_target(view: PluginView) -> tuple[str, str, int, str] | None:
    """(type, host, port, path) of a plugin's health check, or None without one."""
    check = view.manifest.get("health_check")
    if not isinstance(check, Mapping):
        return None
    base = urlsplit(view.base_url)
    host = base.hostname or ""
    port = int(check.get("port") or base.port or (443 if base.scheme == "https" else 80))
    return str(check.get("type", "http")), host, port, str(check.get("path", "/health"))


def _small_metrics(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, Any] = {}
    size = 0
    for key, item in value.items():
        if isinstance(key, str) and isinstance(item, int | float | str | bool):
            size += len(key) + len(str(item))
            if size > METRICS_LIMIT:
                break
            out[key] = item
    return out


class HealthMonitor:
    """Active polling and heartbeat judgement for every active plugin."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        snapshot: SnapshotHolder,
        audit: AuditWriter,
        *,
        policy: HealthPolicy,
        interval: float,
        timeout: float,
        quarantine: Quarantine,
        notify: Notify | None = None,
        replica_id: str | None = None,
        on_change: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        """`on_change(event type, data)` hears every state change (core's PluginHealthChanged
        event on the event lane)."""
        self._sessions = sessions
        self._snapshot = snapshot
        self._audit = audit
        self._policy = policy
        self._interval = interval
        self._timeout = timeout
        self._quarantine = quarantine
        self._notify = notify
        self._on_change = on_change
        self.replica_id = replica_id or uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None
        self._client = httpx.AsyncClient(
            timeout=timeout,
            trust_env=False,
            follow_redirects=False,
            headers={"X-Vivified-Replica": self.replica_id, "User-Agent": "vivified-health"},
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="health-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await leases.release(self._sessions, self.replica_id)
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:  # one bad round must not stop monitoring
                log.exception("health round failed")
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))

    async def tick(self) -> None:
        """One round: probe the plugins this replica holds a lease for; judge heartbeats."""
        views = [v for v in self._snapshot.current.plugins.values() if v.active]
        ttl = self._interval * 3
        mine = []
        for view in views:
            if await leases.acquire(self._sessions, f"health:{view.id}", self.replica_id, ttl):
                mine.append(view)
        await asyncio.gather(*(self._check(v) for v in mine))

    async def _check(self, view: PluginView) -> None:
        target = probe_target(view)
        if target is None:
            await self._judge_heartbeats(view.id)
            return
        started = time.time()
        ok, metrics = await self._probe(*target)
        await self._apply(
            view.id,
            lambda h, now: after_probe(h, ok, now, self._policy),
            metrics,
            source="poll",
            poll_started=started,
        )

    async def _probe(
        self, kind: str, host: str, port: int, path: str
    ) -> tuple[bool, dict[str, Any]]:
        if kind == "tcp":
            try:
                _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), self._timeout)
            except (OSError, TimeoutError):
                return False, {}
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
            return True, {}
        url = f"http://{host}:{port}{path}" if ":" not in host else f"http://[{host}]:{port}{path}"
        try:
            resp = await self._client.get(url)
        except httpx.HTTPError:
            return False, {}
        metrics: dict[str, Any] = {}
        if resp.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(ValueError):
                metrics = _small_metrics(resp.json())
        return resp.status_code == 200, metrics

    async def _judge_heartbeats(self, pid: str) -> None:
        await self._apply(
            pid,
            lambda h, now: from_heartbeat_age(h, now, self._policy),
            None,
            source="heartbeat_age",
        )

    async def heartbeat(self, pid: str, status: str | None, metrics: Any) -> Health:
        """Record a heartbeat sent by the plugin itself. A plugin with a health check is
        judged by its polls first: its heartbeat cannot report it better than they do (a
        plugin missing from the snapshot is treated the same way, the safe side)."""
        view = self._snapshot.current.plugins.get(pid)
        polled = view is None or probe_target(view) is not None
        return await self._apply(
            pid,
            lambda h, now: after_heartbeat(h, status, now, self._policy, polled=polled),
            _small_metrics(metrics),
            source="heartbeat",
        )

    async def _apply(
        self,
        pid: str,
        step: Callable[[Health, float], Health],
        metrics: dict[str, Any] | None,
        *,
        source: str,
        poll_started: float | None = None,
    ) -> Health:
        """Apply one observation under the plugin row's lock. A poll result counts only if
        this replica still holds the plugin's lease and no result of a later poll is recorded
        yet: a replica that stalled mid-poll and lost the lease would otherwise add its old
        failure on top of the new holder's count (after a success in between: `unhealthy`
        before three consecutive failures)."""
        now = time.time()
        async with self._sessions() as s, s.begin():
            row = await s.get(Plugin, pid, with_for_update=True)
            if row is None:
                return Health()
            detail = dict(row.health_detail or {})
            before = Health(
                row.health_state,
                row.health_failures,
                row.health_checked_at,
                detail.get("last_heartbeat"),
            )
            if poll_started is not None and (
                (row.health_checked_at is not None and row.health_checked_at > poll_started)
                or not await leases.holds(s, f"health:{pid}", self.replica_id)
            ):
                log.info("stale health poll dropped", extra={"plugin": pid})
                return before
            after = step(before, now)
            row.health_state = after.state
            row.health_failures = after.consecutive_failures
            row.health_checked_at = after.last_check
            detail["last_heartbeat"] = after.last_heartbeat
            if metrics:
                detail["metrics"] = metrics
            changed = after.state != before.state
            unhealthy_at = [
                t
                for t in detail.get("unhealthy_at", [])
                if now - t <= self._policy.quarantine_window
            ]
            if changed:
                history = list(detail.get("history", []))[-(HISTORY_LIMIT - 1) :]
                history.append(
                    {"time": now, "from": before.state, "to": after.state, "source": source}
                )
                detail["history"] = history
                if after.state == UNHEALTHY:
                    unhealthy_at.append(now)
            detail["unhealthy_at"] = unhealthy_at
            row.health_detail = detail
        if changed:
            await self._transition(pid, before, after, source)
            if after.state == UNHEALTHY and should_quarantine(unhealthy_at, now, self._policy):
                await self._quarantine(pid, "core:health", QUARANTINE_REASON)
        return after

    async def _transition(self, pid: str, before: Health, after: Health, source: str) -> None:
        await self._snapshot.changed("health")
        await self._audit.record(
            AuditEvent(
                actor="core:health",
                lane="health",
                action="health_transition",
                target=pid,
                decision="allow",
                reason=f"{before.state}_to_{after.state}",
                detail={
                    "from": before.state,
                    "to": after.state,
                    "source": source,
                    "consecutive_failures": after.consecutive_failures,
                },
            )
        )
        if self._notify is not None:
            try:
                await self._notify(
                    f"vivified.health.{pid}",
                    {"plugin": pid, "from": before.state, "to": after.state},
                )
            except Exception:  # a notice is best effort; the audit record is the truth
                log.warning("health notice failed", extra={"plugin": pid})
        if self._on_change is not None:
            await self._on_change(
                "PluginHealthChanged",
                {"plugin_id": pid, "from": before.state, "to": after.state, "source": source},
            )
