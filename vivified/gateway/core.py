"""The gateway's collaborators, built once from the settings and handed to the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from vivified.config.bus import KEYS_CHANGED, Bus
from vivified.config.config_service import ConfigService
from vivified.config.propagation import Follower, connect_snapshot
from vivified.config.settings import Settings
from vivified.gateway.events.dispatch import Dispatcher
from vivified.gateway.events.stream import CorePublisher, EventStream
from vivified.gateway.health.monitor import HealthMonitor
from vivified.gateway.metrics import GatewayMetrics, Sampler, attach
from vivified.gateway.operator.circuit import CircuitBreakers
from vivified.gateway.operator.limits import CallerLimits
from vivified.gateway.operator.pool import UpstreamPool
from vivified.gateway.operator.relays import LiveRelays
from vivified.gateway.operator.routes import RouteTables
from vivified.gateway.operator.upstream import new_client, new_pool
from vivified.gateway.plugin_docs import PluginDocs
from vivified.gateway.problems import status_of
from vivified.policy.health import HealthPolicy
from vivified.registry.audit.writer import AuditWriter
from vivified.registry.identity.admins import ensure_bootstrap_admin
from vivified.registry.identity.keys import KeyStore
from vivified.registry.identity.tokens import TokenService
from vivified.registry.plugins.registrar import Registrar
from vivified.registry.store.engine import create_engine, migrate, session_factory
from vivified.registry.store.snapshot import SnapshotHolder

log = logging.getLogger(__name__)


@dataclass
class Core:
    """Everything a request handler may need; one per process, passed explicitly."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    keys: KeyStore
    tokens: TokenService
    audit: AuditWriter
    snapshot: SnapshotHolder
    registrar: Registrar
    generated_admin_token: str | None = None
    health: HealthMonitor | None = None
    routes: RouteTables = field(default_factory=RouteTables)
    circuits: CircuitBreakers = field(default_factory=CircuitBreakers)
    _upstream: aiohttp.ClientSession | None = None
    _pool: UpstreamPool | None = None
    bus: Bus | None = None
    config: ConfigService = field(init=False)
    events: EventStream = field(init=False)
    dispatcher: Dispatcher | None = None
    docs: PluginDocs | None = None
    relays: LiveRelays = field(default_factory=LiveRelays)  # open WebSocket relays
    limits: CallerLimits = field(default_factory=CallerLimits)  # fair sharing, per caller
    key_follower: Follower | None = None
    metrics: GatewayMetrics | None = None  # None with VIVIFIED_METRICS=false
    sampler: Sampler | None = None

    @property
    def pool(self) -> UpstreamPool:
        """The operator lane's HTTP client (made on first use)."""
        if self._pool is None:
            self._pool = new_pool(self.settings)
        return self._pool

    @property
    def upstream(self) -> aiohttp.ClientSession:
        """The operator lane's WebSocket client (made on first use, inside the event loop)."""
        if self._upstream is None:
            self._upstream = new_client(self.settings)
        return self._upstream

    @classmethod
    async def start(cls, settings: Settings) -> Core:
        """Open the registry (migrating it), load keys and the snapshot, start the writers."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.sqlalchemy_url)
        await migrate(engine)
        sessions = session_factory(engine)
        keys = KeyStore(sessions)
        await keys.load(create=True)
        tokens = TokenService(keys, issuer=settings.issuer, ttl=settings.token_ttl)
        audit = AuditWriter(
            sessions,
            queue_size=settings.audit_queue_size,
            batch_size=settings.audit_batch_size,
            flush_interval=settings.audit_flush_interval,
        )
        audit.start()
        snapshot = SnapshotHolder(sessions)
        await snapshot.reload()
        snapshot.start_periodic(settings.snapshot_reload_interval)
        generated = await ensure_bootstrap_admin(sessions, settings.admin_token)
        if settings.registration == "open":
            log.warning(
                "VIVIFIED_REGISTRATION=open: anyone who can reach the gateway may register a "
                "new plugin. Use this for local development only."
            )
        registrar = Registrar(
            sessions,
            tokens,
            audit,
            snapshot,
            registration_mode=settings.registration,
            phi_min_retention_days=settings.phi_min_retention_days,
            refusal_status=status_of,
        )
        core = cls(settings, engine, sessions, keys, tokens, audit, snapshot, registrar, generated)
        core.config = ConfigService(sessions, snapshot, audit, refusal_status=status_of)
        core.bus = connect_snapshot(settings, snapshot, "vivified-gateway")
        snapshot.add_listener(core.relays.review)  # every swap re-admits the open relays
        core.limits = CallerLimits.from_settings(settings)  # per-caller rate and concurrency
        await core.limits.refresh(sessions)
        snapshot.add_listener(lambda _snap: core.limits.refresh(sessions))
        core.key_follower = Follower(
            "signing keys", KEYS_CHANGED, keys.reload, settings.snapshot_reload_interval, core.bus
        )
        core.key_follower.start()
        if core.bus is not None:
            audit.set_on_commit(core.bus.mirror_audit)
        core.events = EventStream(core.bus, settings)
        lifecycle = CorePublisher(core.events) if core.bus is not None else None
        if lifecycle is not None:  # the registry hears of the event lane only through this
            registrar.set_lifecycle(lifecycle)
        if core.bus is not None:
            core.dispatcher = Dispatcher(core.events, snapshot, tokens, audit, settings)
            core.dispatcher.start()
        core.circuits = CircuitBreakers(
            threshold=settings.circuit_threshold, cooldown=settings.circuit_cooldown
        )
        core.health = HealthMonitor(
            sessions,
            snapshot,
            audit,
            policy=health_policy(settings),
            interval=settings.health_interval,
            timeout=min(settings.health_timeout, settings.health_interval),
            quarantine=lambda pid, actor, reason: registrar.disable(pid, actor, "", reason=reason),
            notify=core.bus.publish if core.bus is not None else None,
            on_change=lifecycle,
        )
        core.health.start()
        core.docs = PluginDocs(sessions, snapshot)  # fetches plugins' manifest `docs` pages
        core.docs.start()
        attach(core)  # Prometheus series, hooks and the state sampler
        return core

    async def stop(self) -> None:
        """Drain the audit queue, stop background tasks and close the database."""
        if self.sampler is not None:
            await self.sampler.stop()
        if self.health is not None:
            await self.health.stop()
        if self.docs is not None:
            await self.docs.stop()
        await self.snapshot.stop()
        if self.key_follower is not None:
            await self.key_follower.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.bus is not None:
            await self.bus.close()
        if self._upstream is not None:
            await self._upstream.close()
        if self._pool is not None:
            await self._pool.close()
        await self.audit.stop()
        await self.engine.dispose()


def health_policy(settings: Settings) -> HealthPolicy:
    """Health thresholds from the settings."""
    return HealthPolicy(
        degraded_after=settings.health_degraded_after,
        unhealthy_after=settings.health_unhealthy_after,
        heartbeat_interval=settings.health_interval,
        missed_heartbeats_degraded=settings.health_missed_heartbeats_degraded,
        missed_heartbeats_unhealthy=settings.health_missed_heartbeats_unhealthy,
        quarantine_enabled=settings.health_quarantine,
        quarantine_count=settings.health_quarantine_count,
        quarantine_window=settings.health_quarantine_window,
    )
