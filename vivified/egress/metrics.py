"""The egress proxy's Prometheus series, on a listener of its own.

`VIVIFIED_EGRESS_METRICS_PORT` (0, the default: off) on `VIVIFIED_EGRESS_METRICS_HOST`
(127.0.0.1). The listener has no authentication: it says how much each plugin sends out and
why the proxy refused it, nothing more (no hosts, paths or tokens), and belongs on loopback
or a private scrape network. A lone proxy keeps its values in its own registry and serves it.

With `VIVIFIED_EGRESS_WORKERS` > 1 (`vivified.config.workers`), each worker writes its values
to the multiprocess files of `PROMETHEUS_MULTIPROC_DIR` (`SharedEgressMetrics`, no listener
of its own), and the one listener is in the supervisor (`fleet_metrics`), which sums every
worker's files at each scrape: the same series, the same port, whichever worker served.
Counters are summed (a dead worker's counts stay); the open-tunnel gauge is the live sum;
the build info is the live maximum (1). The supervisor outlives its workers, so a scrape is
answered while one of them restarts.

Series (prefix `vivified_egress_`): decisions by plugin, action, decision and reason; bytes by
plugin and direction; tunnels open; upstream TLS handshakes that failed. A plugin the snapshot
does not know (a refused or forged proxy credential) is `unknown`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from collections.abc import Iterator, Sized
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from mitmproxy import connection, http
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from vivified.config.settings import Settings
from vivified.egress.live_connections import OpenTunnels
from vivified.egress.live_state import EgressState
from vivified.egress.records import Outcome

log = logging.getLogger("vivified.egress.metrics")
UNKNOWN = "unknown"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by the worker supervisor


def _version() -> str:
    try:
        return version("vivified-core")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "unknown"


class EgressMetrics:
    """The series of one egress proxy; `observe` is the audit trail's hook, `addon` counts
    failed upstream TLS handshakes (a mitmproxy addon)."""

    # Multiprocess files (a worker): the series register nowhere, their values live on disk.
    shared = False

    def __init__(self, state: EgressState, tunnels: Sized) -> None:
        self._state = state
        self._open = tunnels
        self.registry = None if self.shared else CollectorRegistry()
        reg = self.registry
        Gauge(
            "vivified_build_info",
            "1, labelled with the running version.",
            ["version", "python"],
            registry=reg,
            multiprocess_mode="livemax",
        ).labels(_version(), platform.python_version()).set(1)
        self.decisions = Counter(
            "vivified_egress_decisions",
            "Egress CONNECTs, requests and tunnels by plugin, action, decision and reason.",
            ["plugin", "action", "decision", "reason"],
            registry=reg,
        )
        self.bytes = Counter(
            "vivified_egress_bytes",
            "Body bytes through the proxy by plugin; direction `out` to the upstream, `in` back.",
            ["plugin", "direction"],
            registry=reg,
        )
        self.tunnels = Gauge(
            "vivified_egress_tunnels_open",
            "CONNECT tunnels open now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        if not self.shared:
            self.tunnels.set_function(lambda: float(len(tunnels)))
        self.tls_failures = Counter(
            "vivified_egress_upstream_tls_failures",
            "TLS handshakes with an upstream that failed.",
            registry=reg,
        )
        self._children: dict[tuple[str, str, str, str], Any] = {}
        self._bytes: dict[str, tuple[Any, Any]] = {}
        self._server: Any = None

    def observe(self, o: Outcome) -> None:
        """One audited outcome (`AuditTrail.observe`)."""
        plugin = o.actor if o.actor in self._state.current.plugins else UNKNOWN
        key = (plugin, o.action, o.decision, o.reason)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.decisions.labels(*key)
        child.inc()
        if o.bytes_in or o.bytes_out:
            pair = self._bytes.get(plugin)
            if pair is None:
                pair = self._bytes[plugin] = (
                    self.bytes.labels(plugin, "in"),
                    self.bytes.labels(plugin, "out"),
                )
            pair[0].inc(o.bytes_in)
            pair[1].inc(o.bytes_out)

    # mitmproxy hook (this object is also an addon)
    def tls_failed_server(self, _data: Any) -> None:
        self.tls_failures.inc()

    def serve(self, host: str, port: int) -> int:
        """Listen for scrapes (a thread of prometheus-client); the bound port, 0 if it failed
        (the proxy runs on without metrics: they are not worth refusing traffic for)."""
        assert self.registry is not None, "a worker's metrics are served by its supervisor"
        self._server, bound = _listen(host, port, self.registry)
        return bound

    def close(self) -> None:
        _close(self._server)
        self._server = None


class SharedEgressMetrics(EgressMetrics):
    """A worker's series, in the multiprocess files. A file holds a number, not a function:
    the open-tunnel gauge is written whenever the count may have changed: a tunnel opened, a
    client left (a revoked tunnel's too). These hooks run after `OpenTunnels`' own (this addon
    comes after it), so they see the new count; nothing is added to the request path."""

    shared = True

    # mitmproxy hooks
    def http_connected(self, _flow: http.HTTPFlow) -> None:
        self.tunnels.set(len(self._open))

    def client_disconnected(self, _client: connection.Client) -> None:
        self.tunnels.set(len(self._open))


def _listen(host: str, port: int, registry: CollectorRegistry) -> tuple[Any, int]:
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("egress metrics: cannot listen on %s:%d: %s", host, port, exc)
        return None, 0
    bound = int(server.server_address[1])
    log.warning("egress metrics on http://%s:%d/metrics", host, bound)
    return server, bound


def _close(server: Any) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()


def start_egress_metrics(
    settings: Settings, state: EgressState, addons: list[Any], *, worker: bool = False
) -> EgressMetrics | None:
    """The proxy's metrics when `egress_metrics_port` is set (and `metrics` is on): hooked
    into the audit trail, and serving unless this is a `worker` (its supervisor serves the
    sum of every worker: `fleet_metrics`); None otherwise. Add the result to mitmproxy's
    addons."""
    if not settings.metrics or not settings.egress_metrics_port:
        return None
    if worker and not os.environ.get(MULTIPROC_ENV):
        log.error("egress metrics: a worker without %s records none", MULTIPROC_ENV)
        return None
    tunnels = next(a for a in addons if isinstance(a, OpenTunnels))
    metrics = (SharedEgressMetrics if worker else EgressMetrics)(state, tunnels)
    state.audit.observe = metrics.observe
    if not worker:
        metrics.serve(settings.egress_metrics_host, settings.egress_metrics_port)
    return metrics


@contextlib.contextmanager
def fleet_metrics(settings: Settings, multiproc_dir: Path) -> Iterator[int]:
    """In the supervisor of egress workers: the one `/metrics` listener, summing the files of
    every worker in `multiproc_dir`, while the block runs; yields its port (0: off/failed)."""
    if not settings.metrics or not settings.egress_metrics_port:
        yield 0
        return
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
    server, bound = _listen(settings.egress_metrics_host, settings.egress_metrics_port, registry)
    try:
        yield bound
    finally:
        _close(server)
