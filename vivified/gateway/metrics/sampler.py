"""The state gauges, read once a second off the hot path: the audit writer's queue and counts,
circuits, plugin health, NATS and registry connections, the config version, and (every
`LAG_EVERY` ticks) the event consumers' lag; once a minute, the console's history."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from vivified.gateway.metrics.history import History, LaneTotals, bucket_totals, counter_totals
from vivified.gateway.metrics.series import CIRCUIT_VALUE, HEALTH_STATES, GatewayMetrics

if TYPE_CHECKING:
    from vivified.gateway.core import Core

log = logging.getLogger("vivified.metrics")
INTERVAL = 1.0  # seconds between samples
LAG_EVERY = 5  # ticks between consumer-lag queries (one JetStream request per lane each)
MINUTE = 60.0


class Sampler:
    """Keeps the state gauges of one gateway process current."""

    def __init__(self, core: Core, metrics: GatewayMetrics) -> None:
        self._core = core
        self._metrics = metrics
        self._written = 0
        self._quarantined = 0
        self._tick = 0
        self._plugins: set[str] = set()  # the plugin ids of the last sample
        self._task: asyncio.Task[None] | None = None
        self.history = History()
        self._next_minute = time.time() + MINUTE

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="metrics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception:  # a metric must never stop the gateway
                log.exception("metrics sample failed")
            await asyncio.sleep(INTERVAL)

    async def sample(self) -> None:
        core, m = self._core, self._metrics
        audit = core.audit
        m.audit_queue.set(audit.pending)
        written, quarantined = audit.written, audit.quarantined
        if written > self._written:
            m.audit_written.inc(written - self._written)
        if quarantined > self._quarantined:
            m.audit_quarantined.inc(quarantined - self._quarantined)
        self._written, self._quarantined = written, quarantined
        m.registry_up.set(1 if audit.healthy else 0)
        m.nats_up.set(1 if core.bus is not None and core.bus.connected else 0)
        snap = core.snapshot.current
        m.config_version.set(snap.egress_version)
        for pid, view in snap.plugins.items():
            m.circuit.labels(pid).set(CIRCUIT_VALUE.get(core.circuits.state(pid), 0.0))
            for state in HEALTH_STATES:
                m.health.labels(pid, state).set(1 if view.health == state else 0)
        # A deleted plugin's gauges go to 0 (multiprocess files cannot forget a label set).
        for gone in self._plugins - set(snap.plugins):
            m.circuit.labels(gone).set(0)
            for state in HEALTH_STATES:
                m.health.labels(gone, state).set(0)
        self._plugins = set(snap.plugins)
        if self._tick % LAG_EVERY == 0 and core.dispatcher is not None:
            try:
                lags = await core.dispatcher.lag()
            except Exception as exc:  # NATS not (yet) connected: the next sample tries again
                log.warning("consumer lag not sampled: %s", type(exc).__name__)
                lags = []
            for item in lags:
                if item.get("pending") is not None:
                    lag = item["pending"] + item.get("in_flight", 0)
                    m.consumer_lag.labels(item["subscriber"]).set(lag)
        self._tick += 1
        now = time.time()
        if now >= self._next_minute:
            self.history.add(self.lanes(), now)
            self._next_minute = now + MINUTE

    def lanes(self) -> dict[str, LaneTotals]:
        """This process's cumulative counts per lane, for the console's history."""
        m = self._metrics
        ops, ops_denied = counter_totals(m.requests, lambda labels: labels["decision"] != "allow")
        pub, pub_denied = counter_totals(m.published, lambda labels: labels["decision"] != "allow")
        return {
            "operator": LaneTotals(ops, ops_denied, bucket_totals(m.added)),
            "events": LaneTotals(pub, pub_denied, bucket_totals(m.delivery_latency)),
        }
