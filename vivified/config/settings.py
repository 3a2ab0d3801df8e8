"""The one settings object: flags, then VIVIFIED_* environment, then an optional TOML file."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from vivified.config.oidc_settings import OidcScopeTable, parse_scope_table
from vivified.config.setting_combinations import combination_problems
from vivified.config.setting_rules import ENV_PREFIX, Gathered, SettingsError, gather, label

DEFAULT_TOKEN_TTL = 24 * 3600
DEFAULT_DATA_DIR = Path(".vivified")
__all__ = [
    "ENV_PREFIX",
    "Settings",
    "SettingsError",
    "inspect_settings",
    "load_settings",
    "setting",
]


_T = TypeVar("_T")


def setting(
    default: _T,
    doc: str,
    *,
    choices: tuple[str, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    secret: bool = False,
) -> _T:
    """A `Settings` field with its documentation (`vivified config docs` renders it).

    `min`/`max` are inclusive bounds, `above` an exclusive lower bound; all three, and
    `choices`, describe what `load_settings` enforces (tests/config/test_settings_doc.py
    checks that they agree; `vivified.config.setting_rules` enforces them). A `secret` is
    never shown in `repr` nor printed by `vivified config check`.
    """
    meta = {"doc": doc, "choices": choices, "min": min, "max": max, "above": above}
    spec: _T = field(default=default, repr=not secret, metadata={**meta, "secret": secret})
    return spec


@dataclass(frozen=True)
class Settings:
    """Every tunable of core. Build it once with `load_settings` and pass it down."""

    data_dir: Path = setting(  # noqa: RUF009 (a field() with an immutable Path default)
        DEFAULT_DATA_DIR,
        "Data directory: the SQLite registry, the egress CA, the embedded NATS store, run files. "
        "Also `--data-dir`.",
    )
    host: str = setting(
        "127.0.0.1", "Address the gateway and the egress proxy listen on. Also `--host`."
    )
    gateway_port: int = setting(
        8000,
        "Gateway port; 0 picks a free one (`--port-file` reports it). Also `--gateway-port`.",
        min=0,
        max=65535,
    )
    gateway_workers: int = setting(
        1,
        "Gateway processes sharing the port (`SO_REUSEPORT`), each a full replica: one per core.",
        min=1,
        max=64,
    )
    # Slowloris guard: seconds a connection gets to send a whole request head.
    header_timeout: float = setting(
        10.0,
        "Seconds a gateway connection gets to send a complete request head, from connect or from "
        "the end of the previous response (keep-alive); then it is closed (408 if half-sent). "
        "Bodies and WebSockets are not limited by it.",
        above=0,
        max=3600,
    )
    # Open connections (HTTP and WebSocket) one gateway process keeps at most.
    max_connections: int = setting(
        4096,
        "Open connections (HTTP and WebSocket) per gateway process; one more is answered 503 "
        "`too_many_connections` and closed at once. Keep it under the open-files limit.",
        min=1,
        max=1_000_000,
    )
    ws_max_lifetime: float = setting(
        3600.0,
        "Longest life of an operator-lane WebSocket relay, seconds; then core closes it (1001 "
        "`ws_max_lifetime`) and the client reconnects through admission again.",
        above=0,
        max=7 * 86400,
    )
    ws_idle_timeout: float = setting(
        300.0,
        "Seconds a WebSocket relay may carry no message either way before core closes it "
        "(1001 `ws_idle_timeout`).",
        above=0,
        max=86400,
    )
    egress_port: int = setting(
        8081, "Egress proxy port; 0 picks a free one. Also `--egress-port`.", min=0, max=65535
    )
    egress_workers: int = setting(
        1,
        "Egress proxy (mitmproxy) processes sharing the port (`SO_REUSEPORT`), each a full "
        "replica: one per core. With more than 1, the egress metrics listener is in their "
        "supervisor and sums them.",
        min=1,
        max=64,
    )
    metrics: bool = setting(
        True,
        "Prometheus series (`GET /metrics` on the gateway, scope `metrics:read`). `false` turns "
        "them off, hooks included (used to measure their cost: `scripts/bench operator`).",
    )
    egress_metrics_host: str = setting(
        "127.0.0.1",
        "Address of the egress proxy's own Prometheus `/metrics` listener (no authentication: "
        "keep it on loopback or a private scrape network).",
    )
    egress_metrics_port: int = setting(
        0,
        "Port of the egress proxy's `/metrics` listener; 0 (the default) turns it off. "
        "Suggested: 8082 (`VIVIFIED_EGRESS_METRICS_PORT=8082 vivified up`).",
        min=0,
        max=65535,
    )
    database_url: str = setting(
        "",
        "Registry database. Empty: SQLite in the data dir; `postgresql://user@host/db` for "
        "scale-out.",
    )
    nats_url: str = setting(
        "",
        "NATS server URL, or several comma-separated (`nats://a:4222,nats://b:4222`: the client "
        "tries each in turn and learns the rest of the cluster). Empty: `vivified up` starts an "
        "embedded `nats-server`; "
        "`vivified gateway`/`egress` rely on the periodic reload alone.",
    )
    registration: str = setting(
        "token",
        "Who may register a new plugin id: `token` (an admin-issued registration token) or `open` "
        "(anyone; development only, logged loudly).",
        choices=("token", "open"),
    )
    admin_token: str = setting(
        "",
        "Bootstrap admin token (at least 24 characters), for automation. Empty: one is generated "
        "on the first start, printed once and written to `admin-token` in the data dir.",
        secret=True,
    )
    public_url: str = setting(
        "",
        "External base URL of the gateway; the OIDC redirect URI is "
        "`{public URL}/console/oidc/callback`.",
    )
    issuer: str = setting(
        "vivified-core", "`iss` claim of the plugin tokens core signs and verifies."
    )
    token_ttl: int = setting(DEFAULT_TOKEN_TTL, "Plugin token lifetime, seconds.", min=60)
    registration_token_ttl: int = setting(
        24 * 3600,
        "Registration token lifetime when the request names no `ttl_seconds`, seconds.",
        min=1,
    )
    max_body_bytes: int = setting(
        100 * 1024 * 1024,
        "Operator-lane request body cap, bytes (100 MiB); larger bodies get 413.",
        min=0,
    )
    max_manifest_bytes: int = setting(
        1024 * 1024, "Registration body (manifest) cap, bytes (1 MiB).", min=1
    )
    upstream_timeout: float = setting(
        30.0,
        "Operator lane: connect and read timeout to a target; egress proxy: connect and "
        "response-header deadline. Seconds.",
        above=0,
    )
    upstream_connections: int = setting(
        512,
        "Keep-alive connections of the operator-lane client pool (all targets together); also the "
        "webhook pool of event delivery.",
        min=1,
    )
    circuit_threshold: int = setting(
        5,
        "Consecutive upstream failures that open a target's circuit (503 `circuit_open`), per "
        "process.",
        min=1,
    )
    circuit_cooldown: float = setting(
        10.0, "Seconds an open circuit waits before it lets a probe request through.", min=0
    )
    rate_limit: float = setting(
        0.0,
        "Requests per second each caller may make on the operator lane and `POST /events`, "
        "bursts up to twice that (429 `rate_limited`); 0 = unlimited. Per process: N replicas "
        "or workers allow up to N times this. A plugin's override: "
        "`PUT /admin/plugins/{id}/limits`.",
        min=0,
        max=1_000_000,
    )
    concurrency_limit: int = setting(
        0,
        "Operator-lane calls and publishes each caller may have in flight at once, per process "
        "(429 `concurrency_limited`); 0 = unlimited.",
        min=0,
        max=1_000_000,
    )
    events_subject: str = setting(
        "vivified.events",
        "Subject prefix of the event stream (dotted tokens); dead letters go to "
        "`<parent>.deadletter`.",
    )
    events_stream: str = setting(
        "VIVIFIED_EVENTS", "JetStream stream of events (unique per deployment on a shared NATS)."
    )
    events_dlq_stream: str = setting("VIVIFIED_DEADLETTERS", "JetStream stream of dead letters.")
    events_replicas: int = setting(1, "Stream replicas on a NATS cluster.", min=1, max=5)
    events_partitions: int = setting(
        8,
        "Ordering lanes: an event's subject (else its type) picks one; one event in flight per "
        "subscriber and lane. Change only with the stream drained.",
        min=1,
        max=64,
    )
    events_max_age: float = setting(
        7 * 24 * 3600.0, "Seconds an event is retained in the stream (7 days).", above=0
    )
    event_max_attempts: int = setting(
        12, "Deliveries of one event before it goes to the dead-letter stream.", min=1
    )
    event_retry_base: float = setting(
        0.5,
        "First retry delay of a failed delivery, seconds; doubles up to `event_retry_max`.",
        above=0,
    )
    event_retry_max: float = setting(
        60.0, "Longest retry delay of a failed delivery, seconds.", above=0
    )
    event_delivery_timeout: float = setting(
        10.0, "Seconds a subscriber's webhook has to answer one delivery.", above=0
    )
    health_interval: float = setting(
        30.0, "Seconds between health polls of a plugin (also the heartbeat interval).", above=0
    )
    phi_min_retention_days: int = setting(
        2190,
        "Shortest audit retention a PHI plugin's manifest may declare, days (HIPAA's six years).",
        min=0,
    )
    audit_queue_size: int = setting(
        10_000, "Audit records waiting for the store, per process.", min=1
    )
    audit_batch_size: int = setting(500, "Most audit records written in one transaction.", min=1)
    audit_flush_interval: float = setting(
        0.05, "Seconds the audit writer waits to fill a batch (0: never waits).", min=0
    )
    audit_wait: float = setting(
        5.0,
        "Seconds an operator-lane call waits for room in a full audit queue before 503 "
        "`audit_unavailable`.",
        above=0,
    )
    snapshot_reload_interval: float = setting(
        2.0,
        "Seconds between safety-net reloads of the in-memory snapshot (changes normally arrive on "
        "NATS at once).",
        above=0,
    )
    egress_upstream_ca: str = setting(
        "",
        "PEM file of extra CAs the egress proxy trusts for upstream TLS, besides the public store "
        "(certifi).",
    )
    ca_key: str = setting(
        "",
        "Key-encryption key of the egress CA's private key in the registry (any secret of at "
        "least 32 characters, e.g. `openssl rand -base64 32`). Give every gateway and egress "
        "replica the same one. Empty (and no `ca_key_file`): generated into `ca-kek` (mode "
        "0600) in the data dir on first start, which suits one machine only.",
        secret=True,
    )
    ca_key_file: str = setting(
        "", "A file holding the egress CA's key-encryption key (instead of `ca_key`)."
    )
    log_level: str = setting(
        "info",
        "Log level of every process (any case). Library chatter (alembic, uvicorn, nats, "
        "mitmproxy, asyncio) is shown below WARNING only at `debug`.",
        choices=("debug", "info", "warning", "error"),
    )
    log_format: str = setting(
        "auto",
        "Log lines on stderr: `text` (one readable line per event) or `json` (one object per "
        "line); `auto` is text when stderr is a terminal, JSON otherwise. Every line names its "
        "process, and its request id and trace id while a request is handled; tokens are masked.",
        choices=("auto", "text", "json"),
    )
    otlp_endpoint: str = setting(
        "",
        "OTLP/HTTP traces endpoint (e.g. `http://collector:4318/v1/traces`): each lane's spans "
        "are exported there. Empty: no export. Needs `pip install opentelemetry-sdk "
        "opentelemetry-exporter-otlp-proto-http` (not a dependency of core).",
    )
    access_log: bool = setting(
        False,
        "One log line per gateway request (method, path, status, latency) on stderr. Off by "
        "default, so `vivified up`'s terminal stays readable; turn it on to ship access logs.",
    )
    egress_tunnel_max_seconds: float = setting(
        3600.0,
        "Longest lifetime of a passthrough (not intercepted) egress tunnel, seconds.",
        above=0,
    )
    egress_dns_timeout: float = setting(
        5.0, "Bound on the egress proxy's name resolution, seconds.", above=0
    )
    health_timeout: float = setting(
        5.0, "Timeout of one health poll, seconds (at most `health_interval`).", above=0
    )
    health_degraded_after: int = setting(
        1,
        "Consecutive failed polls that make a plugin `degraded` (at most "
        "`health_unhealthy_after`).",
        min=1,
    )
    health_unhealthy_after: int = setting(
        3, "Consecutive failed polls that make a plugin `unhealthy`.", min=1
    )
    health_missed_heartbeats_degraded: int = setting(
        2,
        "Missed heartbeat intervals that make a heartbeat-only plugin `degraded` (at most "
        "`health_missed_heartbeats_unhealthy`).",
        min=1,
    )
    health_missed_heartbeats_unhealthy: int = setting(
        4,
        "Missed heartbeat intervals that make a heartbeat-only plugin `unhealthy` (at least "
        "`health_missed_heartbeats_degraded`).",
    )
    health_quarantine: bool = setting(
        False,
        "Disable (quarantine) a plugin automatically when it turns `unhealthy` "
        "`health_quarantine_count` times within `health_quarantine_window`.",
    )
    health_quarantine_count: int = setting(
        3, "Times `unhealthy` within the window that trigger the auto-quarantine.", min=1
    )
    health_quarantine_window: float = setting(
        3600.0, "Window of the auto-quarantine rule, seconds.", above=0
    )
    console_idle_timeout: float = setting(
        1800.0,
        "Seconds an Admin Console session may sit unused before it ends (sign in again).",
        min=1,
        max=86400,
    )
    console_session_lifetime: float = setting(
        43200.0,
        "Seconds an Admin Console session lasts at most, however busy (12 hours).",
        min=60,
        max=30 * 86400,
    )
    console_secure_cookies: bool = setting(
        False,
        "Mark the Admin Console cookie `Secure` even on plain HTTP (set it behind a TLS-"
        "terminating proxy); it is always `Secure` on HTTPS.",
    )
    oidc_issuer: str = setting(
        "",
        "OpenID Provider issuer URL for console sign-in (discovered at start; the gateway exits "
        "if it cannot be). Empty: no OIDC sign-in. Needs the client id, `public_url` and "
        "`[oidc_scopes]`.",
    )
    oidc_client_id: str = setting("", "The console's client id at the OpenID Provider.")
    oidc_client_secret: str = setting(
        "", "The console's client secret at the OpenID Provider.", secret=True
    )
    oidc_client_secret_file: str = setting(
        "", "A file holding the client secret (instead of `oidc_client_secret`)."
    )
    oidc_scopes_claim: str = setting(
        "groups",
        "ID/access token claim (a string or a list of strings) mapped to admin scopes by "
        "`[oidc_scopes]`.",
    )
    oidc_scopes: OidcScopeTable = setting(  # noqa: RUF009 (an immutable tuple default)
        (),
        'Claim value to admin scopes: in the TOML file a table `[oidc_scopes]` with `"claim '
        'value" = ["scope", ...]`; in the environment a JSON object. Derived at every sign-in.',
    )
    oidc_allowed_email_domains: str = setting(
        "",
        "Comma-separated email domains allowed to sign in (`email` claim, verified unless "
        "`email_verified` is absent). Empty: any.",
    )
    oidc_provider_name: str = setting(
        "", "Shown on the sign-in button (`Sign in with <name>`). Empty: the issuer's host."
    )
    oidc_api_audience: str = setting(
        "",
        "When set, `/admin/` also accepts the provider's JWT access tokens whose `aud` holds "
        "this value (scopes mapped by `[oidc_scopes]`).",
    )

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL for the registry database."""
        if not self.database_url:
            return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'registry.db'}"
        url = self.database_url
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    @property
    def gateway_url(self) -> str:
        """Where plugins and admins reach the gateway."""
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.gateway_port}"


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Merge flags over `VIVIFIED_*` environment over the TOML file (`VIVIFIED_CONFIG`);
    SettingsError listing every problem at once."""
    settings, gathered = inspect_settings(flags, environ, config_file)
    if gathered.problems:
        raise SettingsError(gathered.problems)
    return settings


def inspect_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> tuple[Settings, Gathered]:
    """The settings (a refused value left at its default) with where each value came from
    and every problem: what `vivified config check` prints."""
    env = os.environ if environ is None else environ
    gathered = gather(_FIELDS, ENV_PREFIX, flags, env, config_file)
    _take_scope_table(gathered)
    settings = Settings(**gathered.values)
    for name, problem in combination_problems(settings):
        if name not in gathered.refused:
            gathered.refuse(name, f"{_named(settings, gathered, name)}: {problem}")
    return settings, gathered


def _take_scope_table(gathered: Gathered) -> None:
    """`[oidc_scopes]` is the one table setting: parsed here, not as a single value."""
    source = gathered.sources.get("oidc_scopes")
    if source is None:
        return
    gathered.refused.pop("oidc_scopes", None)
    try:
        gathered.values["oidc_scopes"] = parse_scope_table(source.raw)
    except ValueError as exc:
        where = source.where if source.kind != "file" else f"[oidc_scopes] in {source.where}"
        gathered.refuse("oidc_scopes", f"{where}: {exc}")


def _named(s: Settings, gathered: Gathered, name: str) -> str:
    """`VIVIFIED_X=value` (or how the value was given) for a problem naming a combination."""
    source = gathered.sources.get(name)
    if source is None:
        return f"{ENV_PREFIX}{name.upper()}={getattr(s, name)}"
    return label(_FIELDS[name], source, ENV_PREFIX)
