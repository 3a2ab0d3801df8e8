"""The OIDC settings that need more than one field's bounds: the `[oidc_scopes]` table and
the rules between the `oidc_*` fields. Checked when the settings load, so a misconfigured
sign-in stops the gateway at start with one line, never at the first login."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vivified.registry.identity.admins import SCOPES

if TYPE_CHECKING:
    from vivified.config.settings import Settings

# `[oidc_scopes]` as an immutable value: ((claim value, (scope, ...)), ...), sorted.
OidcScopeTable = tuple[tuple[str, tuple[str, ...]], ...]
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def parse_scope_table(raw: Any) -> OidcScopeTable:
    """The claim→scopes table from TOML (a table) or the environment (a JSON object).

    Every value is a list of known admin scopes; ValueError says what is wrong.
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            raise ValueError('not a JSON object like {"claim value": ["scope", ...]}') from None
    if not isinstance(raw, dict):
        raise ValueError('must be a table like "claim value" = ["scope", ...]')
    table: list[tuple[str, tuple[str, ...]]] = []
    for claim_value, scopes in raw.items():
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError(f"{claim_value!r} must map to a list of scope names")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(
                f"{claim_value!r} maps to unknown scopes {unknown}; known: {', '.join(SCOPES)}"
            )
        table.append((str(claim_value), tuple(sorted(set(scopes)))))
    return tuple(sorted(table))


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an absolute https:// URL"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return "must use https:// (plain http only on loopback)"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "must not carry a query, a fragment or credentials"
    return None


def oidc_problems(s: Settings) -> list[tuple[str, str]]:
    """(field, what is wrong) for each broken OIDC rule; nothing when OIDC is not configured."""
    out: list[tuple[str, str]] = []
    if not s.oidc_issuer:
        for name in ("oidc_client_id", "oidc_api_audience"):
            if getattr(s, name):
                out.append((name, "needs VIVIFIED_OIDC_ISSUER"))
        return out
    problem = _url_problem(s.oidc_issuer)
    if problem:
        out.append(("oidc_issuer", problem))
    if not s.oidc_client_id:
        out.append(("oidc_issuer", "needs VIVIFIED_OIDC_CLIENT_ID (the console's client id)"))
    if s.oidc_client_secret and s.oidc_client_secret_file:
        out.append(("oidc_client_secret_file", "give the client secret or its file, not both"))
    if not s.public_url:
        out.append(
            (
                "oidc_issuer",
                "needs VIVIFIED_PUBLIC_URL (the redirect URI is "
                "{public URL}/console/oidc/callback)",
            )
        )
    elif (problem := _url_problem(s.public_url)) is not None:
        out.append(("public_url", problem))
    if not s.oidc_scopes:
        out.append(
            (
                "oidc_scopes",
                "maps no claim value to scopes: nobody could sign in; add an [oidc_scopes] table",
            )
        )
    if not s.oidc_scopes_claim.strip():
        out.append(("oidc_scopes_claim", "must name a claim, e.g. groups"))
    return out
