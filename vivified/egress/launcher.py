"""Runs the egress proxy: mitmproxy 11 in regular mode, in our asyncio loop, with our addons."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
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
from vivified.egress.audit import Audit, OpenRecord
from vivified.egress.auth import ProxyAuthenticator
from vivified.egress.authority import RequestAuthority
from vivified.egress.connect_refusals import RefusedConnects
from vivified.egress.egress_policy import EgressPolicy
from vivified.egress.gateway_guard import GatewayGuard
from vivified.egress.live_connections import LiveConnections, OpenTunnels
from vivified.egress.live_state import AuditSink, AuditTrail, EgressState, SnapshotSource
from vivified.egress.metrics import start_egress_metrics
from vivified.egress.passthrough import PassthroughTunnels
from vivified.egress.pinning import AddressPinning
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
    bundle.write_text(Path(certifi.where()).read_text() + "\n" + extra)
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
        OpenTunnels(state, live.close_client),  # a revoked plugin's tunnels end at once
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


async def run_egress(
    settings: Settings, *, ready: asyncio.Event | None = None, port_file: str | None = None
) -> None:
    """Serve until SIGTERM/SIGINT (or cancellation); audit is flushed before returning."""
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
    authenticator = ProxyAuthenticator(tokens, lambda pid: holder.current.plugin_gen(pid))
    state = shared_state(holder, audit)
    addons = egress_addons(settings, state, authenticator, live)
    metrics = start_egress_metrics(settings, state, addons)  # None unless its port is set
    pinning = next(a for a in addons if isinstance(a, AddressPinning))
    holder.add_listener(next(a for a in addons if isinstance(a, OpenTunnels)).review)
    master.addons.add(*addons, _Ready(pinning, settings, port_file, ready))  # type: ignore[no-untyped-call]
    if metrics is not None:
        master.addons.add(metrics)  # type: ignore[no-untyped-call]
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


def main(settings: Settings, *, port_file: str | None = None) -> int:
    """`vivified egress`: run the proxy in this process until told to stop."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_egress(settings, port_file=port_file))
    return 0
