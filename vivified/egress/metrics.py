"""The egress proxy's Prometheus series, on a listener of its own.

`VIVIFIED_EGRESS_METRICS_PORT` (0, the default: off) on `VIVIFIED_EGRESS_METRICS_HOST`
(127.0.0.1). The listener has no authentication: it says how much each plugin sends out and
why the proxy refused it, nothing more (no hosts, paths or tokens), and belongs on loopback
or a private scrape network. One process, so one registry, no multiprocess files.

Series (prefix `vivified_egress_`): decisions by plugin, action, decision and reason; bytes by
plugin and direction; tunnels open; upstream TLS handshakes that failed. A plugin the snapshot
does not know (a refused or forged proxy credential) is `unknown`.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Sized
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from vivified.config.settings import Settings
from vivified.egress.live_connections import OpenTunnels
from vivified.egress.live_state import EgressState
from vivified.egress.records import Outcome

log = logging.getLogger("vivified.egress.metrics")
UNKNOWN = "unknown"


def _version() -> str:
    try:
        return version("vivified-core")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "unknown"


class EgressMetrics:
    """The series of one egress proxy; `observe` is the audit trail's hook, `addon` counts
    failed upstream TLS handshakes (a mitmproxy addon)."""

    def __init__(self, state: EgressState, tunnels: Sized) -> None:
        self._state = state
        self.registry = CollectorRegistry()
        reg = self.registry
        Gauge(
            "vivified_build_info",
            "1, labelled with the running version.",
            ["version", "python"],
            registry=reg,
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
            "vivified_egress_tunnels_open", "CONNECT tunnels open now.", registry=reg
        )
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
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.error("egress metrics: cannot listen on %s:%d: %s", host, port, exc)
            return 0
        bound = int(self._server.server_address[1])
        log.warning("egress metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def start_egress_metrics(
    settings: Settings, state: EgressState, addons: list[Any]
) -> EgressMetrics | None:
    """The proxy's metrics when `egress_metrics_port` is set (and `metrics` is on): hooked
    into the audit trail, serving; None otherwise. Add the result to mitmproxy's addons."""
    if not settings.metrics or not settings.egress_metrics_port:
        return None
    tunnels = next(a for a in addons if isinstance(a, OpenTunnels))
    metrics = EgressMetrics(state, tunnels)
    state.audit.observe = metrics.observe
    metrics.serve(settings.egress_metrics_host, settings.egress_metrics_port)
    return metrics
