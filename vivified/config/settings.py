"""The one settings object: flags, then VIVIFIED_* environment, then an optional TOML file."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ENV_PREFIX = "VIVIFIED_"
DEFAULT_TOKEN_TTL = 24 * 3600
DEFAULT_DATA_DIR = Path(".vivified")


class SettingsError(ValueError):
    """A setting has a value core cannot use; the message says which and how to fix it."""


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
    checks that they agree). A `secret` is never shown in `repr`.
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
    egress_port: int = setting(
        8081, "Egress proxy port; 0 picks a free one. Also `--egress-port`.", min=0, max=65535
    )
    database_url: str = setting(
        "",
        "Registry database. Empty: SQLite in the data dir; `postgresql://user@host/db` for "
        "scale-out.",
    )
    nats_url: str = setting(
        "",
        "One NATS server URL (a cluster member announces the others; a comma-separated list is "
        "not supported). Empty: `vivified up` starts an embedded `nats-server`; "
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
        "", "External base URL of the gateway. Reserved: nothing reads it yet."
    )
    issuer: str = setting(
        "vivified-core", "`iss` claim of the plugin tokens core signs and verifies."
    )
    token_ttl: int = setting(DEFAULT_TOKEN_TTL, "Plugin token lifetime, seconds.", min=60)
    registration_token_ttl: int = setting(
        24 * 3600, "Registration token lifetime when the request names no `ttl_seconds`, seconds."
    )
    max_body_bytes: int = setting(
        100 * 1024 * 1024, "Operator-lane request body cap, bytes (100 MiB); larger bodies get 413."
    )
    max_manifest_bytes: int = setting(
        1024 * 1024, "Registration body (manifest) cap, bytes (1 MiB)."
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
    )
    circuit_threshold: int = setting(
        5,
        "Consecutive upstream failures that open a target's circuit (503 `circuit_open`), per "
        "process.",
    )
    circuit_cooldown: float = setting(
        10.0, "Seconds an open circuit waits before it lets a probe request through."
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
    events_replicas: int = setting(1, "Stream replicas on a NATS cluster.")
    events_partitions: int = setting(
        8,
        "Ordering lanes: an event's subject (else its type) picks one; one event in flight per "
        "subscriber and lane. Change only with the stream drained.",
        min=1,
        max=64,
    )
    events_max_age: float = setting(
        7 * 24 * 3600.0, "Seconds an event is retained in the stream (7 days)."
    )
    event_max_attempts: int = setting(
        12, "Deliveries of one event before it goes to the dead-letter stream."
    )
    event_retry_base: float = setting(
        0.5, "First retry delay of a failed delivery, seconds; doubles up to `event_retry_max`."
    )
    event_retry_max: float = setting(60.0, "Longest retry delay of a failed delivery, seconds.")
    event_delivery_timeout: float = setting(
        10.0, "Seconds a subscriber's webhook has to answer one delivery."
    )
    health_interval: float = setting(
        30.0, "Seconds between health polls of a plugin (also the heartbeat interval).", above=0
    )
    phi_min_retention_days: int = setting(
        2190,
        "Shortest audit retention a PHI plugin's manifest may declare, days (HIPAA's six years).",
    )
    audit_queue_size: int = setting(10_000, "Audit records waiting for the store, per process.")
    audit_batch_size: int = setting(500, "Most audit records written in one transaction.")
    audit_flush_interval: float = setting(0.05, "Seconds the audit writer waits to fill a batch.")
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
    )
    egress_upstream_ca: str = setting(
        "",
        "PEM file of extra CAs the egress proxy trusts for upstream TLS, besides the public store "
        "(certifi).",
    )
    log_level: str = setting(
        "info", "Log level of every process: `debug`, `info`, `warning`, `error`."
    )
    egress_tunnel_max_seconds: float = setting(
        3600.0, "Longest lifetime of a passthrough (not intercepted) egress tunnel, seconds."
    )
    egress_dns_timeout: float = setting(
        5.0, "Bound on the egress proxy's name resolution, seconds."
    )
    health_timeout: float = setting(
        5.0, "Timeout of one health poll, seconds (at most `health_interval`)."
    )
    health_degraded_after: int = setting(
        1,
        "Consecutive failed polls that make a plugin `degraded` (at least 1, at most "
        "`health_unhealthy_after`; checked when the gateway starts).",
    )
    health_unhealthy_after: int = setting(
        3, "Consecutive failed polls that make a plugin `unhealthy`."
    )
    health_missed_heartbeats_degraded: int = setting(
        2, "Missed heartbeat intervals that make a heartbeat-only plugin `degraded`."
    )
    health_missed_heartbeats_unhealthy: int = setting(
        4, "Missed heartbeat intervals that make a heartbeat-only plugin `unhealthy`."
    )
    health_quarantine: bool = setting(
        False,
        "Disable (quarantine) a plugin automatically when it turns `unhealthy` "
        "`health_quarantine_count` times within `health_quarantine_window`.",
    )
    health_quarantine_count: int = setting(
        3, "Times `unhealthy` within the window that trigger the auto-quarantine."
    )
    health_quarantine_window: float = setting(
        3600.0, "Window of the auto-quarantine rule, seconds."
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


def _coerce(name: str, raw: Any) -> Any:
    default = _FIELDS[name].default
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(str(raw)).expanduser()
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(
            f"setting {name!r} must be a {type(default).__name__}, got {raw!r}"
        ) from exc


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Merge flags over `VIVIFIED_*` environment over the TOML file (`VIVIFIED_CONFIG`)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                file_values = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {path}: {exc}") from exc
        for key, raw in file_values.items():
            name = key.replace("-", "_")
            if name not in _FIELDS:
                raise SettingsError(f"unknown setting {key!r} in {path}")
            values[name] = _coerce(name, raw)
    for name in _FIELDS:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw)
    for name, raw in (flags or {}).items():
        if raw is not None:
            if name not in _FIELDS:
                raise SettingsError(f"unknown setting {name!r}")
            values[name] = _coerce(name, raw)
    settings = Settings(**values)
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+", s.events_subject):
        raise SettingsError("VIVIFIED_EVENTS_SUBJECT must be dotted tokens, e.g. vivified.events")
    if not 1 <= s.events_partitions <= 64:
        raise SettingsError("VIVIFIED_EVENTS_PARTITIONS must be between 1 and 64")
    if not 1 <= s.gateway_workers <= 64:
        raise SettingsError("VIVIFIED_GATEWAY_WORKERS must be between 1 and 64")
    if s.gateway_workers > 1 and not hasattr(socket, "SO_REUSEPORT"):
        raise SettingsError("VIVIFIED_GATEWAY_WORKERS > 1 needs SO_REUSEPORT (Linux, BSD)")
    if not 0 < s.header_timeout <= 3600:
        raise SettingsError("VIVIFIED_HEADER_TIMEOUT must be above 0 and at most 3600 seconds")
    if not 1 <= s.max_connections <= 1_000_000:
        raise SettingsError("VIVIFIED_MAX_CONNECTIONS must be between 1 and 1000000")
    if s.registration not in {"token", "open"}:
        raise SettingsError("VIVIFIED_REGISTRATION must be 'token' or 'open'")
    for name in ("gateway_port", "egress_port"):
        port = getattr(s, name)
        if not 0 <= port <= 65535:
            raise SettingsError(f"{name} must be between 0 and 65535")
    if s.token_ttl < 60:
        raise SettingsError("token_ttl must be at least 60 seconds")
    if s.upstream_timeout <= 0 or s.health_interval <= 0 or s.audit_wait <= 0:
        raise SettingsError("timeouts and intervals must be positive")
