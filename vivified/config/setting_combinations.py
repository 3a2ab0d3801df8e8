"""Rules between settings, beyond one field's bounds (`vivified.config.setting_rules`).

Each broken rule is `(field, what is wrong)`; `inspect_settings` words it with the value as it
was given, so `vivified config check` and a refused start list every problem at once.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from vivified.config.oidc_settings import oidc_problems
from vivified.config.setting_rules import ENV_PREFIX
from vivified.registry.identity.admins import MIN_CONFIGURED_TOKEN_LENGTH

if TYPE_CHECKING:
    from vivified.config.settings import Settings

MIN_CA_KEY_LENGTH = 32  # the egress CA's key-encryption key (vivified.config.egress_ca)


def combination_problems(s: Settings) -> list[tuple[str, str]]:
    """Rules beyond one field's bounds: (field, what is wrong) for each broken one."""
    out: list[tuple[str, str]] = []
    if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+", s.events_subject):
        out.append(("events_subject", "must be dotted tokens, e.g. vivified.events"))
    if s.gateway_workers > 1 and not hasattr(socket, "SO_REUSEPORT"):
        out.append(("gateway_workers", "more than 1 needs SO_REUSEPORT (Linux, BSD): use 1"))
    if s.egress_workers > 1 and not hasattr(socket, "SO_REUSEPORT"):
        out.append(("egress_workers", "more than 1 needs SO_REUSEPORT (Linux, BSD): use 1"))
    if s.admin_token and len(s.admin_token) < MIN_CONFIGURED_TOKEN_LENGTH:
        out.append(
            (
                "admin_token",
                f"must be at least {MIN_CONFIGURED_TOKEN_LENGTH} characters "
                "(e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)",
            )
        )
    if s.nats_url and not all(re.fullmatch(r"\S+", u.strip()) for u in s.nats_url.split(",")):
        out.append(
            ("nats_url", "an empty or blank server in the list: nats://a:4222,nats://b:4222")
        )
    if s.database_url and not re.match(r"(postgres(ql)?|sqlite)(\+\w+)?://", s.database_url):
        out.append(
            (
                "database_url",
                "not a PostgreSQL or SQLite URL: postgresql://user@host/db, or empty for SQLite "
                "in the data dir",
            )
        )
    if s.egress_upstream_ca and not Path(s.egress_upstream_ca).expanduser().is_file():
        out.append(("egress_upstream_ca", "no such file: give the path of a PEM file"))
    if s.ca_key and len(s.ca_key) < MIN_CA_KEY_LENGTH:
        out.append(("ca_key", f"must be at least {MIN_CA_KEY_LENGTH} characters"))
    if s.ca_key and s.ca_key_file:
        out.append(("ca_key_file", "give either VIVIFIED_CA_KEY or VIVIFIED_CA_KEY_FILE, not both"))
    if s.ca_key_file and not Path(s.ca_key_file).expanduser().is_file():
        out.append(("ca_key_file", "no such file: give the path of the key file"))
    for low, high in (
        ("health_degraded_after", "health_unhealthy_after"),
        ("health_missed_heartbeats_degraded", "health_missed_heartbeats_unhealthy"),
    ):
        if getattr(s, low) > getattr(s, high):
            out.append((low, f"must be at most {ENV_PREFIX}{high.upper()}={getattr(s, high)}"))
    out.extend(oidc_problems(s))
    return out
