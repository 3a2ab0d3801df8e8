"""The gateway's OIDC collaborator: provider config, authlib client, keys and validator.

Built once per process by `start_oidc` (from `serve_gateway`, before the app serves) and
kept in `app.state.oidc`; None when `VIVIFIED_OIDC_ISSUER` is empty.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
from authlib.integrations.starlette_client import OAuth  # type: ignore[import-untyped]
from starlette.requests import Request

from vivified.config.settings import Settings
from vivified.gateway.oidc.jwks import KeySet, KeySetError
from vivified.gateway.oidc.pending import Pending
from vivified.gateway.oidc.provider import (
    HTTP_TIMEOUT,
    OidcConfigError,
    ProviderConfig,
    discover,
    fetch_json,
)
from vivified.gateway.oidc.validation import TokenRefused, Validator

log = logging.getLogger(__name__)
CLIENT_NAME = "vivified"


class Oidc:
    """Sign-in with one OpenID Provider (see the package docstring for the flow)."""

    def __init__(self, config: ProviderConfig, keys: KeySet) -> None:
        self.config = config
        self.keys = keys
        self.validator = Validator(config.issuer, keys, config.algorithms)
        oauth = OAuth()
        self.client: Any = oauth.register(
            CLIENT_NAME,
            client_id=config.client_id,
            client_secret=config.client_secret or None,
            authorize_url=config.authorization_endpoint,
            access_token_url=config.token_endpoint,
            client_kwargs={
                "scope": config.request_scopes,
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": (
                    "client_secret_basic" if config.client_secret else "none"
                ),
                "timeout": HTTP_TIMEOUT,
            },
        )

    @property
    def display_name(self) -> str:
        return self.config.display_name

    async def authorization(self) -> tuple[str, Pending]:
        """The provider URL to send the browser to, and what the callback must match."""
        rv = await self.client.create_authorization_url(redirect_uri=self.config.redirect_uri)
        pending = Pending(rv["state"], rv["nonce"], rv["code_verifier"], self.config.redirect_uri)
        return str(rv["url"]), pending

    async def exchange(self, code: str, pending: Pending) -> dict[str, Any]:
        """The token response for `code` (with the PKCE verifier); TokenRefused otherwise."""
        try:
            token: dict[str, Any] = await self.client.fetch_access_token(
                redirect_uri=pending.redirect_uri, code=code, code_verifier=pending.code_verifier
            )
        except OAuthError as exc:
            raise TokenRefused(
                "code_rejected",
                f"the provider refused the sign-in code ({exc.error or 'error'}); sign in again",
            ) from exc
        except httpx.HTTPError as exc:
            log.warning("OIDC token endpoint failed: %s", exc)
            raise TokenRefused("provider_unreachable", "the provider could not be reached") from exc
        if not isinstance(token.get("id_token"), str):
            raise TokenRefused("no_id_token", "the provider answered without an ID token")
        return token

    def logout_url(self) -> str | None:
        """RP-initiated logout at the provider, when it advertises `end_session_endpoint`."""
        if not self.config.end_session_endpoint:
            return None
        query = urlencode(
            {
                "client_id": self.config.client_id,
                "post_logout_redirect_uri": self.config.post_logout_redirect_uri,
            }
        )
        sep = "&" if "?" in self.config.end_session_endpoint else "?"
        return f"{self.config.end_session_endpoint}{sep}{query}"


async def start_oidc(settings: Settings, *, min_refetch_interval: float = 30.0) -> Oidc | None:
    """Discover the provider and read its keys; None when OIDC is not configured.
    OidcConfigError (one line) when it is configured but cannot work."""
    if not settings.oidc_issuer:
        return None
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        config = await discover(settings, client)

    async def fetch() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as c:
            return await fetch_json(c, config.jwks_uri, "OIDC JWKS")

    keys = KeySet(fetch, min_refetch_interval=min_refetch_interval)
    try:
        await keys.load()
    except KeySetError as exc:
        raise OidcConfigError(f"OIDC JWKS {config.jwks_uri}: {exc}") from exc
    return Oidc(config, keys)


def oidc_of(request: Request) -> Oidc | None:
    """The app's OIDC sign-in, if configured."""
    oidc: Oidc | None = getattr(request.app.state, "oidc", None)
    return oidc
