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
from typing import Any

ENV_PREFIX = "VIVIFIED_"
DEFAULT_TOKEN_TTL = 24 * 3600


class SettingsError(ValueError):
    """A setting has a value core cannot use; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Every tunable of core. Build it once with `load_settings` and pass it down."""

    data_dir: Path = Path(".vivified")
    host: str = "127.0.0.1"
    gateway_port: int = 8000
    # Gateway processes sharing the port (SO_REUSEPORT), each a full replica: one per core.
    gateway_workers: int = 1
    egress_port: int = 8081
    database_url: str = ""  # empty: SQLite in data_dir
    nats_url: str = ""  # empty: a managed nats-server under data_dir
    registration: str = "token"  # token | open
    admin_token: str = field(default="", repr=False)
    public_url: str = ""  # how plugins reach the gateway; default http://host:gateway_port
    issuer: str = "vivified-core"
    token_ttl: int = DEFAULT_TOKEN_TTL
    registration_token_ttl: int = 24 * 3600
    max_body_bytes: int = 100 * 1024 * 1024
    max_manifest_bytes: int = 1024 * 1024
    upstream_timeout: float = 30.0
    upstream_connections: int = 512  # operator-lane client pool (all targets together)
    circuit_threshold: int = 5  # consecutive upstream failures that open a target's circuit
    circuit_cooldown: float = 10.0  # seconds before a probe request is let through
    events_subject: str = "vivified.events"  # subject prefix (dead letters: <parent>.deadletter)
    events_stream: str = "VIVIFIED_EVENTS"  # JetStream stream names (unique per deployment)
    events_dlq_stream: str = "VIVIFIED_DEADLETTERS"
    events_replicas: int = 1  # stream replicas on a NATS cluster
    # Ordering lanes: an event's key (its CloudEvents subject, else its type) picks one; each
    # lane keeps one event in flight per subscriber. Change only with the stream drained.
    events_partitions: int = 8
    events_max_age: float = 7 * 24 * 3600.0  # seconds an event is retained
    event_max_attempts: int = 12  # deliveries before a dead letter (≥ 10 over ≥ 5 minutes)
    event_retry_base: float = 0.5  # first retry delay, doubling up to event_retry_max
    event_retry_max: float = 60.0
    event_delivery_timeout: float = 10.0
    health_interval: float = 30.0
    phi_min_retention_days: int = 2190
    audit_queue_size: int = 10_000
    audit_batch_size: int = 500
    audit_flush_interval: float = 0.05
    audit_wait: float = 5.0  # seconds an operator-lane call waits for room in a full audit queue
    snapshot_reload_interval: float = 2.0
    egress_upstream_ca: str = ""
    log_level: str = "info"
    egress_tunnel_max_seconds: float = 3600.0
    egress_dns_timeout: float = 5.0
    health_timeout: float = 5.0
    health_degraded_after: int = 1
    health_unhealthy_after: int = 3
    health_missed_heartbeats_degraded: int = 2
    health_missed_heartbeats_unhealthy: int = 4
    health_quarantine: bool = False
    health_quarantine_count: int = 3
    health_quarantine_window: float = 3600.0

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
