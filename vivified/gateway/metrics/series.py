"""The gateway's Prometheus series (prefix `vivified_`) and the hooks the lanes call.

Label values are bounded: plugin ids that the snapshot knows, reason codes, event types that
passed the publish checks, status classes. A caller whose token did not verify, or a target
the snapshot does not know, is `unknown` (never the claimed name, never a path or request id).

The hot path is one dict lookup per series: the label children are bound once per label tuple
and kept (`_requests`, `_latency`).

Multiprocess: under `vivified.gateway.workers` each worker process gets
`PROMETHEUS_MULTIPROC_DIR` (prometheus-client then keeps every value in a per-process file
there) and `/metrics` sums the files of every worker (`MultiProcessCollector`). Gauges say how
they combine: `livesum` (queue depths), `livemax` (shared state every worker sees, such as the
consumer lag or a plugin's health), `livemin` (connections: 1 only if every worker has one).
A lone gateway keeps the values in this object's own registry.
"""

from __future__ import annotations

import os
import platform
import time
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from vivified.gateway.operator.lane import Call
    from vivified.registry.store.snapshot import SnapshotHolder

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN = "unknown"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000)
STATUS_CLASS = {0: "none", 1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
CIRCUIT_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
HEALTH_STATES = ("healthy", "degraded", "unhealthy", "unknown")
# Dispatcher actions → the `outcome` label of vivified_events_deliveries_total.
DELIVERY_OUTCOME = {
    "deliver": "delivered",
    "retry": "retried",
    "dead_letter": "dead_lettered",
    "skip": "skipped",
    "replay": "replayed",
    "replay_failed": "replay_failed",
}


def multiproc_dir() -> str | None:
    """The multiprocess directory of this process (set by the worker supervisor), or None."""
    return os.environ.get(MULTIPROC_ENV) or None


def build_version() -> str:
    try:
        return version("vivified-core")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "unknown"


class GatewayMetrics:
    """Every series of one gateway process; one per `Core`, passed explicitly."""

    def __init__(self, snapshot: SnapshotHolder) -> None:
        self._snapshot = snapshot
        self.multiproc = multiproc_dir()
        # With multiprocess files the values live on disk: the series register nowhere, and
        # a scrape reads every worker's files. Alone, they register in this object's registry.
        self.registry: CollectorRegistry | None = None if self.multiproc else CollectorRegistry()
        reg = self.registry
        self.build_info = Gauge(
            "vivified_build_info",
            "1, labelled with the running version.",
            ["version", "python"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(build_version(), platform.python_version()).set(1)
        self.requests = Counter(
            "vivified_operator_requests",
            "Operator-lane requests by verified caller, target, decision, reason, status class.",
            ["caller", "target", "decision", "reason", "status_class"],
            registry=reg,
        )
        self.added = Histogram(
            "vivified_operator_added_latency_seconds",
            "Time core adds to an operator-lane call (the whole call less the upstream's part).",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.upstream = Histogram(
            "vivified_operator_upstream_latency_seconds",
            "Time from sending a call upstream to the upstream's response head.",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.circuit = Gauge(
            "vivified_operator_circuit_state",
            "Circuit breaker per target: 0 closed, 1 half-open, 2 open (worst worker).",
            ["target"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.published = Counter(
            "vivified_events_published",
            "Events offered to POST /events, by type, decision and reason.",
            ["type", "decision", "reason"],
            registry=reg,
        )
        self.deliveries = Counter(
            "vivified_events_deliveries",
            "Webhook delivery outcomes by event type and subscriber "
            "(delivered, retried, dead_lettered, skipped, replayed, replay_failed).",
            ["type", "subscriber", "outcome"],
            registry=reg,
        )
        self.delivery_latency = Histogram(
            "vivified_events_delivery_latency_seconds",
            "From an event's `time` to its acknowledged delivery, by subscriber.",
            ["subscriber"],
            buckets=DELIVERY_BUCKETS,
            registry=reg,
        )
        self.consumer_lag = Gauge(
            "vivified_events_consumer_lag",
            "Events waiting for a subscriber (JetStream pending + in flight).",
            ["subscriber"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.audit_queue = Gauge(
            "vivified_audit_queue_depth",
            "Audit records waiting for the writer (sum over workers).",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.audit_batch = Histogram(
            "vivified_audit_batch_size",
            "Records per audit writer batch.",
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.audit_write = Histogram(
            "vivified_audit_write_seconds",
            "Time to write one audit batch (retries included).",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.audit_written = Counter(
            "vivified_audit_records_written",
            "Audit records stored in the chain.",
            registry=reg,
        )
        self.audit_quarantined = Counter(
            "vivified_audit_records_quarantined",
            "Audit records the store refused, kept in the quarantine table.",
            registry=reg,
        )
        self.chain_head = Gauge(
            "vivified_audit_chain_head_timestamp_seconds",
            "Unix time of the newest audit batch this gateway wrote (age: time() - this).",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.registry_up = Gauge(
            "vivified_registry_up",
            "1 while the registry database accepts the audit writer's writes (every worker).",
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.nats_up = Gauge(
            "vivified_nats_connected",
            "1 while connected to NATS (every worker); 0 without NATS or disconnected.",
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.health = Gauge(
            "vivified_plugin_health",
            "1 for each plugin's current health state, 0 for the others.",
            ["plugin", "state"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.config_version = Gauge(
            "vivified_config_egress_version",
            "Version of the egress configuration document in force.",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self._requests: dict[tuple[str, str, str, str, int], Any] = {}
        self._latency: dict[str, tuple[Any, Any]] = {}
        self._deliveries: dict[tuple[str, str, str], Any] = {}
        self._published: dict[tuple[str, str, str], Any] = {}

    def collect_registry(self) -> CollectorRegistry:
        """What `/metrics` renders: this process's registry, or every worker's files."""
        if self.registry is not None:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiproc)  # type: ignore[no-untyped-call]
        return registry

    # -- the operator lane (hot path) ---------------------------------------------------------

    def call(self, call: Call) -> None:
        """One finished operator-lane call."""
        plugins = self._snapshot.current.plugins
        caller = call.caller if call.caller in plugins else UNKNOWN
        target = call.target if call.target in plugins else UNKNOWN
        key = (caller, target, call.decision, call.reason, call.status // 100)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(
                caller, target, call.decision, call.reason, STATUS_CLASS.get(key[4], "other")
            )
        child.inc()
        pair = self._latency.get(target)
        if pair is None:
            pair = self._latency[target] = (self.added.labels(target), self.upstream.labels(target))
        total = time.perf_counter() - call.started
        pair[0].observe(max(0.0, total - call.upstream))
        if call.upstream:
            pair[1].observe(call.upstream)

    # -- events ---------------------------------------------------------------------------------

    def publish(self, kind: str, decision: str, reason: str) -> None:
        """One `POST /events`; `kind` is the event type, or `unknown` when not a known one."""
        key = (kind, decision, reason)
        child = self._published.get(key)
        if child is None:
            child = self._published[key] = self.published.labels(*key)
        child.inc()

    def delivery(self, subscriber: str, event: dict[str, Any], action: str) -> None:
        """One dispatcher outcome (`Dispatcher._record`'s action) for `subscriber`."""
        outcome = DELIVERY_OUTCOME.get(action, "other")
        key = (str(event.get("type", UNKNOWN)), subscriber, outcome)
        child = self._deliveries.get(key)
        if child is None:
            child = self._deliveries[key] = self.deliveries.labels(*key)
        child.inc()
        if outcome == "delivered":
            age = event_age(event.get("time"))
            if age is not None:
                self.delivery_latency.labels(subscriber).observe(age)

    # -- the audit writer -------------------------------------------------------------------

    def audit_batch_done(self, size: int, seconds: float) -> None:
        """The audit writer finished a batch (`AuditWriter.on_batch`)."""
        self.audit_batch.observe(size)
        self.audit_write.observe(seconds)
        self.chain_head.set(time.time())


def event_age(stamp: Any) -> float | None:
    """Seconds since a CloudEvents `time` (RFC 3339), or None when it is not one."""
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, time.time() - when.timestamp())
