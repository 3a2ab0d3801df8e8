"""The OpenID Provider as configured and discovered at start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from vivified.config.settings import Settings

DISCOVERY_PATH = "/.well-known/openid-configuration"
CALLBACK_PATH = "/console/oidc/callback"
SIGNED_OUT_PATH = "/console/oidc/signed-out"
HTTP_TIMEOUT = 10.0
# Signature algorithms we accept: asymmetric only (never `none`, never a shared secret).
ASYMMETRIC_ALGS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


class OidcConfigError(Exception):
    """OIDC is configured but cannot work; the message is the one line the gateway prints."""


@dataclass(frozen=True)
class ProviderConfig:
    """Everything the sign-in needs, from the settings and the discovery document."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    post_logout_redirect_uri: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str
    algorithms: tuple[str, ...]
    request_scopes: str
    scopes_claim: str
    scope_table: dict[str, tuple[str, ...]]
    allowed_email_domains: frozenset[str]
    display_name: str
    api_audience: str


def client_secret(settings: Settings) -> str:
    if not settings.oidc_client_secret_file:
        return settings.oidc_client_secret
    path = Path(settings.oidc_client_secret_file).expanduser()
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise OidcConfigError(
            f"VIVIFIED_OIDC_CLIENT_SECRET_FILE: cannot read {path}: {exc}"
        ) from exc


async def fetch_json(client: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    """A JSON object from the provider; OidcConfigError naming `what` otherwise."""
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        raise OidcConfigError(f"{what} {url} is unreachable: {exc or type(exc).__name__}") from exc
    if response.status_code != 200:
        raise OidcConfigError(f"{what} {url} answered {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise OidcConfigError(f"{what} {url} is not JSON") from exc
    if not isinstance(body, dict):
        raise OidcConfigError(f"{what} {url} is not a JSON object")
    return body


def _endpoint(meta: dict[str, Any], key: str, *, required: bool) -> str:
    value = meta.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or urlsplit(value).scheme not in ("https", "http"):
        raise OidcConfigError(f"the OpenID Provider's discovery document has no usable {key!r}")
    return value


def _algorithms(meta: dict[str, Any]) -> tuple[str, ...]:
    offered = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
    algs = tuple(a for a in ASYMMETRIC_ALGS if a in offered)
    if not algs:
        raise OidcConfigError(
            f"the OpenID Provider signs ID tokens only with {offered}; Vivified needs an "
            "asymmetric algorithm (RS256, ES256, EdDSA, ...)"
        )
    return algs


def build_config(settings: Settings, meta: dict[str, Any]) -> ProviderConfig:
    """The provider configuration from the settings and the discovery document `meta`."""
    issuer = settings.oidc_issuer
    if meta.get("issuer") != issuer:
        raise OidcConfigError(
            f"the discovery document of {issuer} names the issuer {meta.get('issuer')!r}: "
            "VIVIFIED_OIDC_ISSUER must be exactly the provider's issuer"
        )
    scopes = ["openid", "email", "profile"]
    claim = settings.oidc_scopes_claim.strip()
    if claim in (meta.get("scopes_supported") or []) and claim not in scopes:
        scopes.append(claim)  # e.g. a `groups` scope that releases the `groups` claim
    base = settings.public_url.rstrip("/")
    domains = {
        d.strip().lower().lstrip("@") for d in settings.oidc_allowed_email_domains.split(",")
    }
    return ProviderConfig(
        issuer=issuer,
        client_id=settings.oidc_client_id,
        client_secret=client_secret(settings),
        redirect_uri=base + CALLBACK_PATH,
        post_logout_redirect_uri=base + SIGNED_OUT_PATH,
        authorization_endpoint=_endpoint(meta, "authorization_endpoint", required=True),
        token_endpoint=_endpoint(meta, "token_endpoint", required=True),
        jwks_uri=_endpoint(meta, "jwks_uri", required=True),
        end_session_endpoint=_endpoint(meta, "end_session_endpoint", required=False),
        algorithms=_algorithms(meta),
        request_scopes=" ".join(scopes),
        scopes_claim=claim,
        scope_table=dict(settings.oidc_scopes),
        allowed_email_domains=frozenset(d for d in domains if d),
        display_name=settings.oidc_provider_name.strip() or urlsplit(issuer).hostname or issuer,
        api_audience=settings.oidc_api_audience,
    )


async def discover(settings: Settings, client: httpx.AsyncClient) -> ProviderConfig:
    """Read the issuer's discovery document; OidcConfigError when it is unusable."""
    url = settings.oidc_issuer.rstrip("/") + DISCOVERY_PATH
    meta = await fetch_json(client, url, "OIDC discovery")
    return build_config(settings, meta)
