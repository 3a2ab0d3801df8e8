"""Runs the egress proxy: mitmproxy 11 in regular mode, in our asyncio loop, with our addons.

`VIVIFIED_EGRESS_WORKERS=N` (N > 1) runs N such proxies on one port, each a full replica
(its own registry engine, snapshot, NATS connection, audit writer), supervised by
`vivified.config.workers` as the gateway's workers are (`supervise`). What they share:

- the port: every worker's listener has SO_REUSEPORT and the kernel spreads new client
  connections over them. mitmproxy binds in `AsyncioServerInstance.listen` (mitmproxy/proxy/
  mode_servers.py) with a plain `asyncio.start_server` and no option for it. The least
  invasive way in: `SharedPort` listens to the proxyserver's `servers.changed` signal, which
  mitmproxy sends once it has made the server instances and before it starts them, and gives
  the not-yet-started instance a `listen` of its own (an instance attribute, so nothing of
  mitmproxy's classes changes) that does the same `start_server` with `reuse_port=True`.
  mitmproxy still owns the server (its `listen_addrs`, stop, connection handling). A lone
  proxy (N = 1) has no `SharedPort` and binds exactly as before (port 0 -> port file);
- the deployment's CA: one per deployment, in the registry; the first worker starts alone
  and creates it if missing, every worker writes the same files (atomically) into the data
  dir and follows a rotation on its own (`follow_ca`);
- the audit chain: every worker's writer appends to the one chain in the registry, as
  separate replicas do;
- revocation: each worker keeps its own `OpenTunnels` and ends its own tunnels of a revoked
  plugin, or to a destination the policy no longer allows, when its snapshot reloads (a NATS
  change notice, or the periodic reload without NATS);
- metrics: see `vivified.egress.metrics` (one listener, in the supervisor, summing workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vivified.config.bus import EGRESS_CA_CHANGED, KEYS_CHANGED
from vivified.config.children import write_port
from vivified.config.egress_ca import (
    ca_dir,
    ensure_deployment_ca,
    key_encryption_key,
    materialise,
    signing_ca,
)
from vivified.config.settings import Settings
from vivified.config.workers import Workers, vivified_worker
from vivified.config.workers import supervise as supervise_workers
from vivified.egress.audit import Audit, OpenRecord
from vivified.egress.auth import ProxyAuthenticator
from vivified.egress.authority import RequestAuthority
from vivified.egress.connect_refusals import RefusedConnects
from vivified.egress.egress_policy import EgressPolicy
from vivified.egress.gateway_guard import GatewayGuard
from vivified.egress.live_connections import LiveConnections, OpenTunnels
from vivified.egress.live_state import AuditSink, AuditTrail, EgressState, SnapshotSource
from vivified.egress.metrics import fleet_metrics, start_egress_metrics
from vivified.egress.passthrough import PassthroughTunnels
from vivified.egress.pinning import AddressPinning
from vivified.egress.pipeline import Pipeline
from vivified.egress.proxy_auth import PluginAuth
from vivified.egress.resolve import Resolver
from vivified.egress.response_deadline import ResponseDeadline
from vivified.egress.response_filtering import ResponseFilter
from vivified.egress.tracing import Tracing
from vivified.egress.tunnels import Tunnels
from vivified.egress.upstream_connect import UpstreamConnect

log = logging.getLogger(__name__)


def trust_bundle(settings: Settings) -> str | None:
    """The public store (certifi) plus `VIVIFIED_EGRESS_UPSTREAM_CA`, as one PEM file."""
    if not settings.egress_upstream_ca:
        return None  # mitmproxy uses certifi's store
    import certifi

    bundle = settings.data_dir / "egress-ca" / "upstream-trust.pem"
    extra = Path(settings.egress_upstream_ca).read_text()
    # Atomically: workers rewrite it at their start while the others read it.
    tmp = bundle.with_name(f".{bundle.name}-{os.getpid()}")
    tmp.write_text(Path(certifi.where()).read_text() + "\n" + extra)
    os.replace(tmp, bundle)
    return str(bundle)


def mitmproxy_options(settings: Settings, confdir: Path) -> dict[str, Any]:
    """The mitmproxy options of the egress proxy (set once the addons have declared them)."""
    return dict(
        mode=[f"regular@{settings.egress_port}"],
        listen_host=settings.host,
        confdir=str(confdir),
        # Connect on CONNECT, so connection failures are answered before the tunnel opens.
        connection_strategy="eager",
        # One HTTP/1.1 parser in front of every rule; raw TCP only for passthrough domains.
        http2=False,
        rawtcp=False,
        websocket=True,
        ssl_verify_upstream_trusted_ca=trust_bundle(settings),
    )


def mitmproxy_addons() -> list[Any]:
    """The built-in mitmproxy addons the egress proxy keeps (DumpMaster loads 34)."""
    from mitmproxy.addons import (
        block,
        core,
        disable_h2c,
        errorcheck,
        next_layer,
        proxyserver,
        tlsconfig,
    )

    return [
        core.Core(),
        block.Block(),  # refuses clients from public addresses unless configured
        disable_h2c.DisableH2C(),
        proxyserver.Proxyserver(),  # type: ignore[no-untyped-call]
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        errorcheck.ErrorCheck(),
    ]


def egress_addons(
    settings: Settings,
    state: EgressState,
    authenticator: ProxyAuthenticator,
    live: LiveConnections,
) -> list[Any]:
    """Our addons, in the order mitmproxy asks them about every event. Each one tags the flow
    (`flow_state`) for the ones after it; a refused flow is left alone by the rest and
    recorded by the last."""
    return [
        OpenRecord(),  # the flow's audit record, filled in by the addons below
        Tracing(),  # W3C traceparent continued (or started) and sent upstream; in the record
        Tunnels(),  # a request inside an accepted CONNECT acts as the tunnel's plugin
        GatewayGuard(settings),  # calls to core's own gateway: 403 gateway_via_proxy, NO_PROXY
        PluginAuth(authenticator, state.audit),  # 407; waits while the audit backlog is full
        OpenTunnels(state, live.close_client),  # revoked or narrowed tunnels end at once
        RequestAuthority(),  # Host/SNI agree with the authorised target: 400/421
        EgressPolicy(state),  # allowlist, blocklist, ports, kill switch: 403
        AddressPinning(  # resolve, check every address, connect to the checked one
            state,
            Resolver(settings.egress_dns_timeout),
            own_listeners=[
                (settings.host, settings.gateway_port),
                (settings.host, settings.egress_port),
            ],
        ),
        UpstreamConnect(settings.upstream_timeout),  # 502/504 when the upstream is unreachable
        PassthroughTunnels(state, settings.egress_tunnel_max_seconds, live.close_client),
        ResponseFilter(state, live.close_client),  # stripped headers, content types, size caps
        ResponseDeadline(settings.upstream_timeout, live.inject, live.close_upstream),
        RefusedConnects(live.send_last),  # a refused CONNECT: one write, then closed
        Audit(state),  # one record per flow
    ]


def shared_state(snapshots: SnapshotSource, audit: AuditSink) -> EgressState:
    """The live state every addon is given: the snapshot holder and the audit writer."""
    return EgressState(snapshots, AuditTrail(audit))


class SharedPort:
    """Makes mitmproxy's listeners bind with SO_REUSEPORT (a worker; see the module doc).

    Kept as an addon (no hooks): mitmproxy's signals hold their receivers weakly."""

    def __init__(self, proxyserver: Any) -> None:
        self._servers = proxyserver.servers
        self._servers.changed.connect(self._share)

    def _share(self) -> None:
        from mitmproxy.proxy.mode_servers import AsyncioServerInstance

        for instance in self._servers:
            if isinstance(instance, AsyncioServerInstance) and not instance.is_running:
                instance.listen = _reuse_port_listen(instance)  # type: ignore[method-assign]


def _reuse_port_listen(instance: Any) -> Any:
    async def listen(host: str, port: int) -> list[asyncio.Server]:
        return [await asyncio.start_server(instance.handle_stream, host, port, reuse_port=True)]

    return listen


class _Ready:
    """Reports the bound address once mitmproxy listens (port file, ready event, own listeners)."""

    def __init__(
        self,
        pinning: AddressPinning,
        settings: Settings,
        port_file: str | None,
        ready: asyncio.Event | None,
    ) -> None:
        self._pinning = pinning
        self._settings = settings
        self._port_file = port_file
        self._ready = ready
        self.port = 0

    def running(self) -> None:
        from mitmproxy import ctx

        master: Any = ctx.master
        addrs = master.addons.get("proxyserver").listen_addrs()
        self.port = int(addrs[0][1])
        self._pinning.own_listeners.append((self._settings.host, self.port))
        if self._port_file:
            write_port(self._port_file, self.port)
        log.warning("egress proxy listening on %s:%d", self._settings.host, self.port)
        if self._ready is not None:
            self._ready.set()
        # Everything built by now (modules, mitmproxy's and our state: ~200,000 objects)
        # lives as long as the process: keep it out of every collection (a full collection
        # re-scanned it, ~20 % of the proxy's CPU under load).
        gc.collect()
        gc.freeze()


async def run_egress(
    settings: Settings,
    *,
    ready: asyncio.Event | None = None,
    port_file: str | None = None,
    worker: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT (or cancellation); audit is flushed before returning.
    A `worker` shares its port (SO_REUSEPORT) and its metrics (multiprocess files)."""
    from mitmproxy.master import Master
    from mitmproxy.options import Options

    from vivified.config.propagation import Follower, connect_snapshot
    from vivified.registry.audit.writer import AuditWriter
    from vivified.registry.identity.keys import KeyStore
    from vivified.registry.identity.tokens import TokenService
    from vivified.registry.store.engine import create_engine, migrate, session_factory
    from vivified.registry.store.snapshot import SnapshotHolder

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.sqlalchemy_url)
    await migrate(engine)
    sessions = session_factory(engine)
    try:  # the deployment's CA, into mitmproxy's confdir (EgressCaError: one line, exit 2)
        kek = key_encryption_key(settings)
        signer = await ensure_deployment_ca(sessions, settings)
        materialise(signer, kek, ca_dir(settings.data_dir))
    except BaseException:
        await engine.dispose()
        raise
    keys = KeyStore(sessions)
    await keys.load(create=False)
    tokens = TokenService(keys, issuer=settings.issuer, ttl=settings.token_ttl)
    holder = SnapshotHolder(sessions)
    await holder.reload()
    holder.start_periodic(settings.snapshot_reload_interval)
    bus = connect_snapshot(settings, holder, "vivified-egress")
    audit = AuditWriter(
        sessions,
        queue_size=settings.audit_queue_size,
        batch_size=settings.audit_batch_size,
        flush_interval=settings.audit_flush_interval,
    )
    if bus is not None:
        audit.set_on_commit(bus.mirror_audit)
    audit.start()
    # Only the mitmproxy addons the proxy lane uses: every addon is asked about every event
    # (fewer is faster), and none of playback, map-local/remote, onboarding (mitm.it),
    # scripts, saving flows or mitmproxy's own proxy auth has any business here.
    loop = asyncio.get_running_loop()
    master = Master(Options(), event_loop=loop)
    master.addons.add(*mitmproxy_addons())  # type: ignore[no-untyped-call]
    if worker:
        master.addons.add(SharedPort(master.addons.get("proxyserver")))  # type: ignore[no-untyped-call]
    master.options.update(**mitmproxy_options(settings, ca_dir(settings.data_dir)))  # type: ignore[no-untyped-call]
    signing = signer.ca_id

    async def follow_ca() -> None:
        """After a rotation: materialise the new CA and have mitmproxy load it."""
        nonlocal signing
        ca = await signing_ca(sessions)
        if ca is None or ca.ca_id == signing:
            return
        materialise(ca, kek, ca_dir(settings.data_dir))
        master.addons.get("tlsconfig").configure({"confdir"})  # type: ignore[no-untyped-call]
        signing = ca.ca_id
        log.warning("egress proxy now signs with %s", ca.name)

    interval = settings.snapshot_reload_interval
    followers = [
        Follower("signing keys", KEYS_CHANGED, keys.reload, interval, bus),
        Follower("egress CA", EGRESS_CA_CHANGED, follow_ca, interval, bus),
    ]
    for follower in followers:
        follower.start()

    live = LiveConnections(master)
    authenticator = ProxyAuthenticator(tokens, holder)
    state = shared_state(holder, audit)
    addons = egress_addons(settings, state, authenticator, live)
    metrics = start_egress_metrics(settings, state, addons, worker=worker)  # None: no port
    pinning = next(a for a in addons if isinstance(a, AddressPinning))
    holder.add_listener(next(a for a in addons if isinstance(a, OpenTunnels)).review)
    stages: list[Any] = [*addons, _Ready(pinning, settings, port_file, ready)]
    if metrics is not None:  # after OpenTunnels: the open-tunnels gauge follows its hooks
        stages.append(metrics)
    # One addon in mitmproxy's chain for all of ours: each event runs only the stages that
    # handle it (vivified.egress.pipeline: mitmproxy's per-addon dispatch cost a fifth of
    # the proxy's CPU with fifteen addons).
    master.addons.add(Pipeline(stages))  # type: ignore[no-untyped-call]
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, master.should_exit.set)
    try:
        await master.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        if metrics is not None:
            metrics.close()
        await holder.stop()
        for follower in followers:
            await follower.stop()
        if bus is not None:
            await bus.close()
        await audit.stop()
        await engine.dispose()


def main(settings: Settings, *, port_file: str | None = None, worker: bool = False) -> int:
    """`vivified egress` (or one of its workers): run the proxy in this process until told
    to stop."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_egress(settings, port_file=port_file, worker=worker))
    return 0


def supervise(settings: Settings, port_file: str | None, passthrough: Sequence[str]) -> int:
    """`vivified egress` with `egress_workers` > 1: the workers on one port, and the egress
    metrics listener (the sum of every worker) in this supervisor, until SIGTERM/SIGINT."""
    command = vivified_worker("egress", passthrough)

    def workers(run_dir: Path) -> Workers:
        return Workers("egress", settings.egress_workers, command, run_dir)

    return supervise_workers(
        workers,
        settings.egress_port,
        port_file,
        serving=lambda w: fleet_metrics(settings, w.metrics_dir),
    )
